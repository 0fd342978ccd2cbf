// What the HTTP layer records of every request: its /metrics counters and latency, and its one
// log line; and why a refused request is counted as rejected.
#pragma once

#include <optional>
#include <string>

#include "server/api.h"
#include "server/errors.h"
#include "server/logger.h"
#include "server/metrics.h"

namespace llmserve::server {

// Counts the request by route, method and status, observes its duration and logs its line
// (probes at debug level, engine errors at error level).
void record_request(MetricsRegistry& metrics, Logger& logger, const RequestContext& context,
                    int status);

// The rejection reason /metrics counts for an error response, if it is one.
std::optional<std::string> rejection_reason(const ApiError& error);
void count_rejected_request(MetricsRegistry& metrics, const std::string& reason);

}  // namespace llmserve::server
