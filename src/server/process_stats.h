// The standard process_* figures every Prometheus client library exports (CPU time, memory,
// start time, file descriptors), read from Linux /proc/self.
#pragma once

#include <cstdint>
#include <optional>

namespace llmserve::server {

struct ProcessStats {
    std::optional<double> cpu_seconds;  // user + system CPU time
    std::optional<std::uint64_t> resident_memory_bytes;
    std::optional<std::uint64_t> virtual_memory_bytes;
    std::optional<double> start_time_seconds;  // since the Unix epoch
    std::optional<std::uint64_t> open_fds;
    std::optional<std::uint64_t> max_fds;  // the soft RLIMIT_NOFILE
};

// Each figure is nullopt when /proc (or the limit) cannot be read.
ProcessStats read_process_stats();

}  // namespace llmserve::server
