#include "common/error.h"

namespace llmserve {

std::string_view to_string(ErrorCode code) {
    switch (code) {
        case ErrorCode::kInvalidArgument: return "invalid_argument";
        case ErrorCode::kNotFound: return "not_found";
        case ErrorCode::kCorruptData: return "corrupt_data";
        case ErrorCode::kUnsupported: return "unsupported";
        case ErrorCode::kResourceExhausted: return "resource_exhausted";
        case ErrorCode::kUnavailable: return "unavailable";
        case ErrorCode::kPermissionDenied: return "permission_denied";
        case ErrorCode::kCancelled: return "cancelled";
        case ErrorCode::kInternal: return "internal";
    }
    return "unknown";
}

}  // namespace llmserve
