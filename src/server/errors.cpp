#include "server/errors.h"

#include <nlohmann/json.hpp>

namespace llmserve::server {
namespace {

ApiError make(int status, std::string type, std::string code, std::string message,
              std::string param = {}) {
    return ApiError{status,           std::move(message), std::move(type),
                    std::move(param), std::move(code),    std::nullopt};
}

ApiError from_error(const Error& error) {
    const std::string message = error.what();
    if (dynamic_cast<const MalformedRequest*>(&error) != nullptr) {
        return make(400, "invalid_request_error",
                    error.param().empty() ? "invalid_json" : "invalid_type", message,
                    error.param());
    }
    if (dynamic_cast<const ModelNotFound*>(&error) != nullptr) {
        return make(404, "invalid_request_error", "model_not_found", message, error.param());
    }
    if (dynamic_cast<const ContextLengthExceeded*>(&error) != nullptr) {
        return make(422, "invalid_request_error", "context_length_exceeded", message,
                    error.param());
    }
    if (dynamic_cast<const GenerationTimedOut*>(&error) != nullptr) {
        return make(504, "timeout_error", "timeout", message);
    }
    switch (error.code()) {
        case ErrorCode::kInvalidArgument:
            return make(422, "invalid_request_error", "invalid_value", message, error.param());
        case ErrorCode::kUnsupported:
            return make(400, "invalid_request_error", "unsupported", message, error.param());
        case ErrorCode::kNotFound:
            return make(404, "invalid_request_error", "not_found", message, error.param());
        case ErrorCode::kPermissionDenied:
            return unauthorized(true);
        case ErrorCode::kResourceExhausted: {
            ApiError api = make(503, "service_unavailable_error", "queue_full", message);
            api.retry_after_s = 1;
            return api;
        }
        case ErrorCode::kUnavailable:
        case ErrorCode::kCancelled: {
            ApiError api = make(503, "service_unavailable_error",
                                std::string(to_string(error.code())), message);
            api.retry_after_s = 1;
            return api;
        }
        case ErrorCode::kCorruptData:
        case ErrorCode::kInternal:
            break;
    }
    return make(500, "server_error", "internal_error", message);
}

}  // namespace

std::string ApiError::body() const {
    const nlohmann::json error = {
        {"error",
         {{"message", message},
          {"type", type},
          {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
          {"code", code}}}};
    return error.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

ApiError api_error_from(std::exception_ptr error, ErrorStyle style) {
    try {
        std::rethrow_exception(error);
    } catch (const Error& e) {
        ApiError api = from_error(e);
        if (style == ErrorStyle::kOpenAi && api.status == 422) api.status = 400;
        return api;
    } catch (const std::bad_alloc&) {
        ApiError api = make(503, "service_unavailable_error", "out_of_memory",
                            "the server ran out of memory while handling this request");
        api.retry_after_s = 1;
        return api;
    } catch (const std::exception& e) {
        return make(500, "server_error", "internal_error",
                    std::string("internal error: ") + e.what());
    } catch (...) {
        return make(500, "server_error", "internal_error", "internal error: unknown exception");
    }
}

ApiError route_not_found(std::string_view method, std::string_view path) {
    return make(404, "invalid_request_error", "not_found",
                fmt::format("no route for {} {}", method, path));
}

ApiError method_not_allowed(std::string_view method, std::string_view path,
                            std::string_view allowed) {
    return make(405, "invalid_request_error", "method_not_allowed",
                fmt::format("{} is not allowed on {}; allowed: {}", method, path, allowed));
}

ApiError payload_too_large(long long limit_bytes) {
    return make(413, "invalid_request_error", "payload_too_large",
                fmt::format("request body is larger than the limit of {} bytes (MAX_BODY_BYTES)",
                            limit_bytes));
}

ApiError unsupported_media_type(std::string_view received) {
    return make(415, "invalid_request_error", "unsupported_media_type",
                fmt::format("the body must be sent with Content-Type: application/json; got {}",
                            received.empty() ? std::string("no Content-Type")
                                             : fmt::format("'{}'", received)),
                "Content-Type");
}

ApiError unauthorized(bool key_given) {
    return make(401, "authentication_error", "invalid_api_key",
                key_given ? "the API key is not valid"
                          : "an API key is required: send 'Authorization: Bearer <key>'");
}

ApiError rate_limited(int retry_after_s) {
    ApiError api =
        make(429, "rate_limit_error", "rate_limit_exceeded",
             fmt::format("rate limit exceeded (RATE_LIMIT_RPM); retry in {} s", retry_after_s));
    api.retry_after_s = retry_after_s;
    return api;
}

ApiError not_ready(std::string reason, int retry_after_s) {
    ApiError api = make(503, "service_unavailable_error", "not_ready", std::move(reason));
    api.retry_after_s = retry_after_s;
    return api;
}

ApiError bad_http_request(int status) {
    switch (status) {
        case 400:
            return make(400, "invalid_request_error", "bad_http_request", "malformed HTTP request");
        case 414:
            return make(414, "invalid_request_error", "uri_too_long", "request URI is too long");
        case 416:
            return make(416, "invalid_request_error", "bad_range", "range not satisfiable");
        default:
            break;
    }
    if (status < 500) {
        return make(status, "invalid_request_error", "bad_http_request",
                    fmt::format("the HTTP request was refused (status {})", status));
    }
    return make(status, "server_error", "internal_error",
                fmt::format("the HTTP layer failed (status {})", status));
}

ApiError protocol_error(int status, std::string message) {
    const char* code = "bad_http_request";
    switch (status) {
        case 408:
            code = "request_timeout";
            break;
        case 413:
            code = "payload_too_large";
            break;
        case 431:
            code = "headers_too_large";
            break;
        case 501:
            code = "not_implemented";
            break;
        case 505:
            code = "http_version_not_supported";
            break;
        default:
            break;
    }
    return make(status, "invalid_request_error", code, std::move(message));
}

}  // namespace llmserve::server
