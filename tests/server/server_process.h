// Test helper: the real `llmserve serve` binary started on a free loopback port with a chosen
// environment, its stdout and stderr collected, and small HTTP helpers for talking to it.
#pragma once

#include <httplib.h>
#include <sys/types.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace llmserve::server::testing {

using Environment = std::map<std::string, std::string>;

// Path of the embedded model the tests serve.
std::string embedded_model_dir();

class ServerProcess {
  public:
    // Starts the server with `environment` on top of a clean one (every server variable unset,
    // PORT=0, HOST=127.0.0.1, LOG_FORMAT=json, THREADS=1, the embedded model) and waits until
    // /ready answers 200. Fails the test (and throws) when it does not come up.
    explicit ServerProcess(const std::map<std::string, std::string>& environment = {},
                           const std::vector<std::string>& arguments = {});
    ~ServerProcess();  // SIGKILL if still running
    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;

    int port() const { return port_; }
    pid_t pid() const { return pid_; }
    std::unique_ptr<httplib::Client> client(
        std::chrono::seconds read_timeout = std::chrono::seconds(60)) const;

    // Sends `signal` (0: none) and waits for the exit; returns the exit status (or 128 + signal
    // when the process died of a signal), nullopt when it did not exit within `timeout`.
    std::optional<int> stop(int signal, std::chrono::milliseconds timeout);

    // Everything the process wrote to stdout and stderr so far.
    std::string output() const;
    // The JSON log lines (LOG_FORMAT=json) written so far.
    std::vector<nlohmann::json> log_lines() const;

  private:
    void collect_output(int fd);

    pid_t pid_ = -1;
    int port_ = 0;
    std::optional<int> exit_status_;
    mutable std::mutex mutex_;
    std::string output_;
    std::thread reader_;
};

// Runs `llmserve` to completion with the given environment and arguments; returns the exit
// status and the combined output.
std::pair<int, std::string> run_llmserve(const std::map<std::string, std::string>& environment,
                                         const std::vector<std::string>& arguments);

// A parsed server-sent-event stream: the JSON payloads of the "data:" lines, and whether it
// ended with "data: [DONE]".
struct EventStream {
    std::vector<nlohmann::json> events;
    bool done = false;
};
EventStream parse_event_stream(const std::string& body);

// POSTs a JSON body; fails the test on a transport error.
httplib::Result post_json(httplib::Client& client, const std::string& path,
                          const nlohmann::json& body, const httplib::Headers& headers = {});

// The value of a sample in Prometheus text (e.g. `llmserve_generation_tokens_total` or
// `llmserve_http_requests_total{route="/generate",method="POST",code="200"}`); 0 when absent.
double metric_value(const std::string& metrics_text, const std::string& sample);

bool valid_utf8(const std::string& text);

}  // namespace llmserve::server::testing
