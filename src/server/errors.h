// HTTP errors: the one place where an llmserve::Error (or anything else thrown while serving a
// request) becomes an HTTP status and the JSON body {"error": {"message", "type", "param",
// "code"}} that every error response carries (OpenAI's shape).
#pragma once

#include <exception>
#include <optional>
#include <string>

#include "common/error.h"

namespace llmserve::server {

// A request body that is not JSON, or a field of the wrong JSON type: HTTP 400. (Values of the
// right type but out of range are plain Error(kInvalidArgument) with a param: HTTP 422.)
class MalformedRequest : public Error {
  public:
    MalformedRequest(std::string message, std::string param = {})
        : Error(ErrorCode::kInvalidArgument, std::move(message), std::move(param)) {}
};

// A prompt that does not fit the model's context (with the requested new tokens): HTTP 422 with
// OpenAI's code "context_length_exceeded".
class ContextLengthExceeded : public Error {
  public:
    ContextLengthExceeded(std::string message, std::string param)
        : Error(ErrorCode::kInvalidArgument, std::move(message), std::move(param)) {}
};

// An OpenAI "model" the server does not serve: HTTP 404 with OpenAI's code "model_not_found".
class ModelNotFound : public Error {
  public:
    explicit ModelNotFound(std::string message)
        : Error(ErrorCode::kNotFound, std::move(message), "model") {}
};

// A request that got no token before its deadline (REQUEST_TIMEOUT_S): it waited in the queue,
// or its prompt took that long. HTTP 504 with code "timeout" rather than 200 with empty text.
class GenerationTimedOut : public Error {
  public:
    explicit GenerationTimedOut(std::string message)
        : Error(ErrorCode::kUnavailable, std::move(message)) {}
};

// Throws MalformedRequest naming `param` with a formatted message.
template <typename... Args>
[[noreturn]] void fail_malformed(std::string param, fmt::format_string<Args...> format,
                                 Args&&... args) {
    throw MalformedRequest(fmt::format(format, std::forward<Args>(args)...), std::move(param));
}

struct ApiError {
    int status = 500;
    std::string message;
    std::string type;   // "invalid_request_error", "authentication_error", ...
    std::string param;  // the request field at fault; empty = null
    std::string code;   // machine-readable: "invalid_json", "out_of_range", "queue_full", ...
    std::optional<int> retry_after_s;  // sent as Retry-After (429, 503)

    // {"error": {"message", "type", "param", "code"}} as compact JSON text.
    std::string body() const;
};

// Which API's conventions an error follows: the OpenAI routes answer every invalid value with
// 400 (as OpenAI and vLLM do, so that SDKs raise BadRequestError); /generate keeps 422 for a
// value of the right type that is out of range.
enum class ErrorStyle { kNative, kOpenAi };

// Maps what a handler threw to its HTTP error (never lets anything escape). Bad input is never
// a 500: only kInternal errors and exceptions that are not llmserve::Error map to 500.
ApiError api_error_from(std::exception_ptr error, ErrorStyle style = ErrorStyle::kNative);

// A refusal decided by the HTTP layer itself (auth, rate limit, not ready), thrown to the
// dispatcher with the reason /metrics counts it under.
struct Rejection {
    ApiError error;
    std::string reason;
};

// Errors the server raises itself (not through an exception).
ApiError route_not_found(std::string_view method, std::string_view path);
ApiError method_not_allowed(std::string_view method, std::string_view path,
                            std::string_view allowed);
ApiError payload_too_large(long long limit_bytes);
// A JSON route's body sent with another Content-Type (`received`; empty when none was sent).
ApiError unsupported_media_type(std::string_view received);
ApiError unauthorized(bool key_given);
ApiError rate_limited(int retry_after_s);
ApiError not_ready(std::string reason, int retry_after_s);
ApiError bad_http_request(int status);  // other 4xx/5xx produced by the HTTP library itself
// A request the HTTP layer refused: `status` (400, 408, 413, 431, 501, 505) and what was wrong.
ApiError protocol_error(int status, std::string message);

}  // namespace llmserve::server
