// What the HTTP layer hands an API route and what the route answers, with no socket in between:
// route functions take an ApiCall and return an ApiResponse, so tests drive them directly.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmserve::server {

using Clock = std::chrono::steady_clock;

// What one request carries through the pipeline and reports in its log line.
struct RequestContext {
    std::string id;
    std::string method;
    std::string route;  // the route's path, or "unmatched"
    std::string path;
    std::string client;
    std::optional<std::size_t> key_index;
    Clock::time_point start = Clock::now();
    long long prompt_tokens = 0;
    long long completion_tokens = 0;
    std::vector<std::string> finish_reasons;
    std::string engine_error;  // why the engine ended a sequence with an error, if it did
    bool probe = false;        // /health, /ready, /metrics
    bool streaming = false;    // the end of the stream finishes the request
    bool client_gone = false;
};

struct ApiCall {
    std::string body;
    std::shared_ptr<RequestContext> context = std::make_shared<RequestContext>();
    // Polled while generating; true cancels the generation (the client went away).
    std::function<bool()> client_gone = [] { return false; };
};

// Where a streamed answer is written; false: the client can no longer be written to.
using StreamSink = std::function<bool(std::string_view bytes)>;

struct ApiResponse {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
    // A streamed answer (server-sent events): writes the whole stream to the sink, after the
    // route has returned. `on_close` runs once the stream is over or abandoned.
    std::function<void(const StreamSink& sink)> stream;
    std::function<void()> on_close;
};

}  // namespace llmserve::server
