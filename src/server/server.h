// The HTTP front end (the HTTP layer of server/): worker threads hand each request to its route
// (api_routes.h: one adapter per API over one generation path, generation_path.h), which answers
// with a body or a stream of server-sent events. Every route goes through the same steps: request
// id, API key, rate limit, handler, JSON error on any failure, metrics and one log line.
#pragma once

#include <chrono>
#include <memory>
#include <optional>

#include "chat/chat_template.h"

#include "server/config.h"
#include "server/logger.h"
#include "server/metrics.h"

namespace llmserve::engine {
class Engine;
}

namespace llmserve::server {

class HttpServer {
  public:
    HttpServer(const ServerConfig& config, Logger& logger);  // `logger` outlives the server
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Binds HOST:PORT (PORT 0: any free port) and returns the bound port. Throws
    // Error(kUnavailable) naming the address and the reason.
    int bind();

    // Accepts and serves connections until shutdown(); run it on its own thread after bind().
    // Returns once every connection has been served.
    void serve();

    // Makes the model available: generation endpoints and /ready work from now on. Without a
    // chat template /v1/chat/completions answers 400 saying how to give one.
    void attach_engine(std::shared_ptr<engine::Engine> engine, double load_seconds,
                       std::optional<chat::ChatTemplate> chat_template = std::nullopt);

    // Graceful stop: no new connections; running generations get up to `grace` to finish, then
    // are cancelled (their clients still receive what was generated). Returns when no generation
    // is running; serve() returns once their responses are written.
    void shutdown(std::chrono::duration<double> grace);

    MetricsRegistry& metrics();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace llmserve::server
