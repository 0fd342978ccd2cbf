// One error type for the whole project: a category (mapped to HTTP status in exactly one place,
// src/server) and a message that names the thing at fault (file, tensor, field, value).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace llmserve {

enum class ErrorCode {
    kInvalidArgument,    // a caller-supplied value is malformed or out of range
    kNotFound,           // a file, tensor, model or route does not exist
    kCorruptData,        // a file exists but its content is damaged or inconsistent
    kUnsupported,        // well-formed input we deliberately do not handle
    kResourceExhausted,  // memory, queue or KV cache is full
    kUnavailable,        // a service or device is not there (network, GPU)
    kPermissionDenied,   // authentication or authorisation failed
    kCancelled,          // the caller went away
    kInternal,           // a bug: an invariant of ours was broken
};

std::string_view to_string(ErrorCode code);

class Error : public std::runtime_error {
public:
    Error(ErrorCode code, std::string message, std::string param = {})
        : std::runtime_error(std::move(message)), code_(code), param_(std::move(param)) {}

    ErrorCode code() const noexcept { return code_; }
    // The request field at fault ("top_p", "prompt"), empty when the error is not about one field.
    const std::string& param() const noexcept { return param_; }

private:
    ErrorCode code_;
    std::string param_;
};

// Throws Error(code, fmt::format(...)); keeps call sites to one line.
template <typename... Args>
[[noreturn]] void fail(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
    throw Error(code, fmt::format(format, std::forward<Args>(args)...));
}

// Throws Error(kInvalidArgument) about one named request field; the message should name it too.
template <typename... Args>
[[noreturn]] void fail_param(std::string param, fmt::format_string<Args...> format, Args&&... args) {
    throw Error(ErrorCode::kInvalidArgument, fmt::format(format, std::forward<Args>(args)...),
                std::move(param));
}

}  // namespace llmserve
