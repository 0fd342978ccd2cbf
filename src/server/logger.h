// A small structured logger: one line per event on a stream (stderr by default), either
// `2024-01-01T12:00:00.123Z INFO message key=value ...` or a JSON object per line, with a
// minimum level. Thread-safe: a line is written whole.
#pragma once

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/config.h"

namespace llmserve::server {

// Ordered key/value pairs of one log line. Values are JSON scalars (strings, numbers, booleans).
using LogFields = std::vector<std::pair<std::string, nlohmann::json>>;

class Logger {
  public:
    Logger(LogLevel min_level, LogFormat format);                     // writes to std::cerr
    Logger(LogLevel min_level, LogFormat format, std::ostream& out);  // `out` outlives the logger

    bool enabled(LogLevel level) const { return level >= min_level_; }
    void log(LogLevel level, std::string_view message, const LogFields& fields = {});

    void debug(std::string_view message, const LogFields& fields = {}) {
        log(LogLevel::kDebug, message, fields);
    }
    void info(std::string_view message, const LogFields& fields = {}) {
        log(LogLevel::kInfo, message, fields);
    }
    void warn(std::string_view message, const LogFields& fields = {}) {
        log(LogLevel::kWarn, message, fields);
    }
    void error(std::string_view message, const LogFields& fields = {}) {
        log(LogLevel::kError, message, fields);
    }

    // The line `log` would write (without the newline), for a given timestamp text.
    std::string format_line(std::string_view timestamp, LogLevel level, std::string_view message,
                            const LogFields& fields) const;

  private:
    const LogLevel min_level_;
    const LogFormat format_;
    std::ostream& out_;
    std::mutex mutex_;
};

// Current UTC time as RFC 3339 with milliseconds: 2024-01-01T12:00:00.123Z.
std::string utc_timestamp();

}  // namespace llmserve::server
