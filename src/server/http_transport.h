// The server's connections: one epoll thread accepts them and reads each request whole (headers
// and body under a deadline, a cap on connections per client address), then hands complete
// requests to a pool of worker threads, which run the handler and write the response (chunked
// streaming included). An idle or slow socket never holds a worker: keep-alive connections go
// back to the epoll set between requests, and pipelined requests are answered in order.
// cpp-httplib 0.11 holds a worker per connection for its whole life, so it is kept only for its
// Request and Response types, which the handlers use.
#pragma once

#include <httplib.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "server/metrics.h"

namespace llmserve::server {

struct TransportOptions {
    std::string host = "0.0.0.0";
    int port = 0;  // 0: any free port
    int backlog = 4096;
    int worker_threads = 64;
    std::chrono::milliseconds request_read_timeout{10'000};  // first byte -> whole request
    std::chrono::milliseconds keep_alive_timeout{5'000};     // idle between requests
    std::chrono::milliseconds write_timeout{30'000};         // per write that makes no progress
    int max_connections_per_client = 256;                    // per peer address; 0 = unlimited
    long long max_body_bytes = 1 << 20;
    std::size_t max_header_bytes = 16 * 1024;
};

class HttpTransport {
  public:
    // Runs on a worker thread for each complete request; fills the response (a body, or a
    // chunked content provider that the transport then drives).
    using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
    // Runs on a worker thread for a request refused by the HTTP layer itself: `status` (400,
    // 408, 413, 431, 501, 505) and what was wrong. `request` holds what could be parsed.
    using ErrorHandler =
        std::function<void(const httplib::Request& request, httplib::Response& response, int status,
                           const std::string& message)>;

    HttpTransport(TransportOptions options, Handler handler, ErrorHandler error_handler,
                  MetricsRegistry& metrics);
    ~HttpTransport();
    HttpTransport(const HttpTransport&) = delete;
    HttpTransport& operator=(const HttpTransport&) = delete;

    // Binds and listens; returns the port. Throws Error(kUnavailable) naming the address.
    int bind();

    // Serves until stop(), then until every request handed to a worker has been answered or
    // aborted; returns with every connection closed. Call once, after bind().
    void serve();

    // Stops accepting and closes every connection that is not being answered; connections being
    // answered are closed once their response is written. Thread-safe, idempotent; may come
    // before serve() starts.
    void stop();

    // Waits until every response in progress is written, at most until `deadline`; then shuts
    // down the sockets still being written (their writes fail at once). Call after stop().
    void drain(std::chrono::steady_clock::time_point deadline);

  private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace llmserve::server
