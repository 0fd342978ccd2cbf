#include "hub/progress.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include <unistd.h>

namespace llmserve::hub {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::seconds;
using TimePoint = std::chrono::steady_clock::time_point;

constexpr milliseconds kRedrawInterval{100};
constexpr int kBarWidth = 24;

// Bytes per second over what this run transferred (resumed bytes came for free).
double rate(std::uint64_t transferred, TimePoint started, TimePoint now) {
    const double elapsed = std::chrono::duration<double>(now - started).count();
    return elapsed > 0 ? static_cast<double>(transferred) / elapsed : 0.0;
}

}  // namespace

std::string format_bytes(double bytes) {
    constexpr std::array<const char*, 5> kUnits{"B", "KiB", "MiB", "GiB", "TiB"};
    std::size_t unit = 0;
    while (bytes >= 1024.0 && unit + 1 < kUnits.size()) {
        bytes /= 1024.0;
        ++unit;
    }
    return unit == 0 ? fmt::format("{:.0f} B", bytes)
                     : fmt::format("{:.1f} {}", bytes, kUnits[unit]);
}

std::string format_duration(seconds duration) {
    const auto total = std::max<std::int64_t>(0, duration.count());
    const auto hours = total / 3600;
    const auto minutes = total / 60 % 60;
    const auto secs = total % 60;
    return hours > 0 ? fmt::format("{}:{:02}:{:02}", hours, minutes, secs)
                     : fmt::format("{}:{:02}", minutes, secs);
}

TerminalProgress::TerminalProgress(std::FILE* out, Clock clock)
    : out_(out), clock_(std::move(clock)) {}

void TerminalProgress::start(const std::string& file, std::uint64_t total_bytes,
                             std::uint64_t resumed_bytes) {
    file_ = file;
    total_ = total_bytes;
    resumed_ = done_ = resumed_bytes;
    started_ = clock_();
    draw(false);
}

void TerminalProgress::advance(std::uint64_t done_bytes) {
    done_ = done_bytes;
    if (clock_() - last_draw_ >= kRedrawInterval) draw(false);
}

void TerminalProgress::finish(bool succeeded) {
    draw(true);
    std::fputs(succeeded ? "\n" : " failed\n", out_);
    std::fflush(out_);
}

void TerminalProgress::draw(bool final_draw) {
    const TimePoint now = clock_();
    last_draw_ = now;
    const double bytes_per_second = rate(done_ - std::min(done_, resumed_), started_, now);
    std::string line = fmt::format("\r{:<32.32} ", file_);
    if (total_ > 0) {
        const double fraction =
            std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
        const int filled = static_cast<int>(fraction * kBarWidth);
        line += fmt::format("[{}{}] {:3.0f}% {}/{}", std::string(filled, '#'),
                            std::string(kBarWidth - filled, '.'), fraction * 100.0,
                            format_bytes(static_cast<double>(done_)),
                            format_bytes(static_cast<double>(total_)));
    } else {
        line += format_bytes(static_cast<double>(done_));
    }
    line += fmt::format(" {}/s", format_bytes(bytes_per_second));
    if (!final_draw && total_ > done_ && bytes_per_second > 0) {
        const auto eta = seconds(static_cast<std::int64_t>(
            static_cast<double>(total_ - done_) / bytes_per_second + 0.5));
        line += " ETA " + format_duration(eta);
    }
    line += "\x1b[K";  // clear what a longer previous line left on the right
    std::fputs(line.c_str(), out_);
    std::fflush(out_);
}

LogProgress::LogProgress(std::FILE* out, milliseconds interval, Clock clock)
    : out_(out), interval_(interval), clock_(std::move(clock)) {}

void LogProgress::start(const std::string& file, std::uint64_t total_bytes,
                        std::uint64_t resumed_bytes) {
    file_ = file;
    total_ = total_bytes;
    resumed_ = done_ = resumed_bytes;
    started_ = last_line_ = clock_();
    std::string line = fmt::format("downloading {}", file_);
    if (total_ > 0) line += fmt::format(" ({})", format_bytes(static_cast<double>(total_)));
    if (resumed_ > 0) {
        line += fmt::format(", resuming after {}", format_bytes(static_cast<double>(resumed_)));
    }
    fmt::print(out_, "{}\n", line);
    std::fflush(out_);
}

void LogProgress::advance(std::uint64_t done_bytes) {
    done_ = done_bytes;
    const TimePoint now = clock_();
    if (now - last_line_ < interval_) return;
    last_line_ = now;
    const double bytes_per_second = rate(done_ - std::min(done_, resumed_), started_, now);
    std::string line = fmt::format("{}: {}", file_, format_bytes(static_cast<double>(done_)));
    if (total_ > 0) {
        line += fmt::format(" of {} ({:.0f}%)", format_bytes(static_cast<double>(total_)),
                            100.0 * static_cast<double>(done_) / static_cast<double>(total_));
    }
    line += fmt::format(" at {}/s", format_bytes(bytes_per_second));
    if (total_ > done_ && bytes_per_second > 0) {
        line += ", ETA " + format_duration(seconds(static_cast<std::int64_t>(
                               static_cast<double>(total_ - done_) / bytes_per_second + 0.5)));
    }
    fmt::print(out_, "{}\n", line);
    std::fflush(out_);
}

void LogProgress::finish(bool succeeded) {
    const auto elapsed = duration_cast<seconds>(clock_() - started_);
    if (succeeded) {
        fmt::print(out_, "{}: done, {} in {}\n", file_, format_bytes(static_cast<double>(done_)),
                   format_duration(elapsed));
    } else {
        fmt::print(out_, "{}: failed after {} of {}\n", file_,
                   format_bytes(static_cast<double>(done_)),
                   total_ > 0 ? format_bytes(static_cast<double>(total_)) : "?");
    }
    std::fflush(out_);
}

std::unique_ptr<ProgressSink> make_stderr_progress() {
    if (::isatty(STDERR_FILENO) != 0) return std::make_unique<TerminalProgress>(stderr);
    return std::make_unique<LogProgress>(stderr);
}

}  // namespace llmserve::hub
