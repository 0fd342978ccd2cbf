// Download progress: an interface the downloader reports to, a terminal progress bar for
// interactive use and periodic log lines for everything else (services, CI logs).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

namespace llmserve::hub {

// Called from the downloading thread, one file at a time: start, advance*, finish.
class ProgressSink {
  public:
    virtual ~ProgressSink() = default;
    // `total_bytes` is 0 when unknown; `resumed_bytes` were already on disk from an earlier try.
    virtual void start(const std::string& file, std::uint64_t total_bytes,
                       std::uint64_t resumed_bytes) = 0;
    // `done_bytes` of the file are on disk now (resumed bytes included); never decreases,
    // except after a restart, which calls start again.
    virtual void advance(std::uint64_t done_bytes) = 0;
    virtual void finish(bool succeeded) = 0;
};

using Clock = std::function<std::chrono::steady_clock::time_point()>;

// "1.5 MiB", "512 B".
std::string format_bytes(double bytes);
// "0:07", "12:05", "1:02:03".
std::string format_duration(std::chrono::seconds duration);

// One line redrawn in place with a carriage return: name, bar, percent, bytes, rate, ETA.
// Redraws at most every 100 ms, and always on finish, which ends the line.
class TerminalProgress final : public ProgressSink {
  public:
    explicit TerminalProgress(std::FILE* out, Clock clock = std::chrono::steady_clock::now);
    void start(const std::string& file, std::uint64_t total_bytes,
               std::uint64_t resumed_bytes) override;
    void advance(std::uint64_t done_bytes) override;
    void finish(bool succeeded) override;

  private:
    void draw(bool final_draw);

    std::FILE* out_;
    Clock clock_;
    std::string file_;
    std::uint64_t total_ = 0;
    std::uint64_t resumed_ = 0;
    std::uint64_t done_ = 0;
    std::chrono::steady_clock::time_point started_{};
    std::chrono::steady_clock::time_point last_draw_{};
};

// A line when a file starts, one every `interval` while it downloads, and one when it ends.
class LogProgress final : public ProgressSink {
  public:
    explicit LogProgress(std::FILE* out,
                         std::chrono::milliseconds interval = std::chrono::seconds(10),
                         Clock clock = std::chrono::steady_clock::now);
    void start(const std::string& file, std::uint64_t total_bytes,
               std::uint64_t resumed_bytes) override;
    void advance(std::uint64_t done_bytes) override;
    void finish(bool succeeded) override;

  private:
    std::FILE* out_;
    std::chrono::milliseconds interval_;
    Clock clock_;
    std::string file_;
    std::uint64_t total_ = 0;
    std::uint64_t resumed_ = 0;
    std::uint64_t done_ = 0;
    std::chrono::steady_clock::time_point started_{};
    std::chrono::steady_clock::time_point last_line_{};
};

// TerminalProgress on stderr when stderr is a terminal, LogProgress on stderr otherwise.
std::unique_ptr<ProgressSink> make_stderr_progress();

}  // namespace llmserve::hub
