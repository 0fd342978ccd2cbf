#include "server/logger.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <iostream>

namespace llmserve::server {
namespace {

std::string dump(const nlohmann::json& value) {
    return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Text-format values: bare when they contain nothing that would make the line ambiguous.
std::string text_value(const nlohmann::json& value) {
    if (!value.is_string()) return dump(value);
    const auto& text = value.get_ref<const std::string&>();
    const bool bare = !text.empty() && std::none_of(text.begin(), text.end(), [](char c) {
        return c == ' ' || c == '"' || c == '=' || c == '\\' ||
               static_cast<unsigned char>(c) < 0x20;
    });
    return bare ? text : dump(value);
}

std::string level_name_upper(LogLevel level) {
    std::string name(to_string(level));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return name;
}

}  // namespace

Logger::Logger(LogLevel min_level, LogFormat format) : Logger(min_level, format, std::cerr) {}

Logger::Logger(LogLevel min_level, LogFormat format, std::ostream& out)
    : min_level_(min_level), format_(format), out_(out) {}

std::string Logger::format_line(std::string_view timestamp, LogLevel level,
                                std::string_view message, const LogFields& fields) const {
    if (format_ == LogFormat::kJson) {
        nlohmann::ordered_json line = {
            {"ts", timestamp}, {"level", to_string(level)}, {"msg", message}};
        for (const auto& [key, value] : fields) line[key] = value;
        return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    }
    std::string line = fmt::format("{} {} {}", timestamp, level_name_upper(level), message);
    for (const auto& [key, value] : fields) line += fmt::format(" {}={}", key, text_value(value));
    return line;
}

void Logger::log(LogLevel level, std::string_view message, const LogFields& fields) {
    if (!enabled(level)) return;
    const std::string line = format_line(utc_timestamp(), level, message, fields) + '\n';
    std::lock_guard lock(mutex_);
    out_ << line << std::flush;
}

std::string utc_timestamp() {
    const auto now = std::chrono::system_clock::now();
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
        1000;
    return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z",
                       fmt::gmtime(std::chrono::system_clock::to_time_t(now)), millis);
}

}  // namespace llmserve::server
