#include "server/request_log.h"

#include <fmt/format.h>

#include <cmath>

namespace llmserve::server {

void record_request(MetricsRegistry& metrics, Logger& logger, const RequestContext& context,
                    int status) {
    const double seconds = std::chrono::duration<double>(Clock::now() - context.start).count();
    metrics
        .counter("llmserve_http_requests_total", "HTTP requests by route, method and status code.",
                 {{"route", context.route},
                  {"method", context.method},
                  {"code", std::to_string(status)}})
        .inc();
    metrics
        .histogram("llmserve_http_request_duration_seconds",
                   "Time from request arrival to the end of the response, by route.",
                   latency_buckets_seconds(), {{"route", context.route}})
        .observe(seconds);
    LogFields fields = {{"request_id", context.id},
                        {"method", context.method},
                        {"path", context.path},
                        {"status", status},
                        {"latency_ms", std::round(seconds * 1e4) / 10},
                        {"client", context.client}};
    if (context.key_index) fields.emplace_back("api_key", *context.key_index);
    if (context.prompt_tokens > 0 || context.completion_tokens > 0) {
        fields.emplace_back("prompt_tokens", context.prompt_tokens);
        fields.emplace_back("completion_tokens", context.completion_tokens);
    }
    if (!context.finish_reasons.empty()) {
        fields.emplace_back("finish_reason",
                            fmt::format("{}", fmt::join(context.finish_reasons, ",")));
    }
    if (context.client_gone) fields.emplace_back("client_gone", true);
    if (!context.engine_error.empty()) fields.emplace_back("error", context.engine_error);
    // Probes arrive every few seconds from load balancers: their lines are debug-level.
    const LogLevel level = !context.engine_error.empty() ? LogLevel::kError
                           : status >= 500               ? LogLevel::kWarn
                           : context.probe               ? LogLevel::kDebug
                                                         : LogLevel::kInfo;
    logger.log(level, "request", fields);
}

std::optional<std::string> rejection_reason(const ApiError& error) {
    switch (error.status) {
        case 400:
        case 404:
        case 405:
        case 415:
        case 422:
        case 431:
        case 501:
        case 505:
            return "validation";
        case 408:
            return "read_timeout";
        case 401:
            return "auth";
        case 413:
            return "payload_too_large";
        case 429:
            return "rate_limit";
        case 503:
            return error.code == "queue_full" ? "queue_full" : error.code;
        default:
            return std::nullopt;
    }
}

void count_rejected_request(MetricsRegistry& metrics, const std::string& reason) {
    metrics
        .counter("llmserve_rejected_requests_total",
                 "Requests refused before generation, by reason.", {{"reason", reason}})
        .inc();
}

}  // namespace llmserve::server
