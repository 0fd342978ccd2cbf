// What the API routes share: the loaded model (engine and chat template), the settings that make
// a request's defaults and limits, the registry of running generations that shutdown waits on,
// and the generation metrics.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include "chat/chat_template.h"
#include "engine/engine.h"
#include "server/api.h"
#include "server/config.h"
#include "server/generation.h"
#include "server/logger.h"
#include "server/metrics.h"
#include "server/schemas.h"

namespace llmserve::server {

inline constexpr int kMaxSamplesPerPrompt = 16;  // the engine's default bound on n
inline constexpr int kMaxPromptsPerRequest = 32;
inline constexpr int kMaxSequencesPerRequest = 64;

// The loaded model as the routes see it.
struct LoadedModel {
    std::shared_ptr<engine::Engine> engine;
    std::optional<chat::ChatTemplate> chat_template;  // none: chat answers 400
};

class ServingState {
  public:
    // `config`, `metrics` and `logger` outlive the state.
    ServingState(const ServerConfig& config, MetricsRegistry& metrics, Logger& logger);

    const ServerConfig& config() const { return config_; }
    MetricsRegistry& metrics() { return metrics_; }
    Logger& logger() { return logger_; }

    void attach(LoadedModel model, double load_seconds);
    // The model, or a Rejection (503 not_ready) while it loads or the server shuts down.
    LoadedModel require_model() const;
    std::shared_ptr<engine::Engine> engine_if_loaded() const;
    double load_seconds() const;

    // The request defaults: explicit settings > the model's generation_config.json > built-in.
    engine::GenerationSettings generation_settings(const engine::Engine& engine) const;
    RequestLimits request_limits(const engine::Engine& engine) const;

    // Running generations: a lease keeps one registered until it is destroyed.
    class JobLease {
      public:
        JobLease(ServingState& state, std::shared_ptr<GenerationJob> job);
        ~JobLease();
        JobLease(const JobLease&) = delete;
        JobLease& operator=(const JobLease&) = delete;

      private:
        ServingState& state_;
        std::shared_ptr<GenerationJob> job_;
    };
    std::size_t running_jobs();
    // From now on require_model() refuses (503): the server is shutting down.
    void begin_shutdown() { shutting_down_ = true; }
    // Waits until no generation runs or `deadline` passes; true when none runs.
    bool wait_for_generations(Clock::time_point deadline);
    // Cancels every running generation and waits until they have ended.
    void cancel_generations();
    bool shutting_down() const { return shutting_down_; }

    // Token counts, finish reasons and latencies of a finished generation, into /metrics and the
    // request's log line.
    void record_generation(RequestContext& context,
                           const std::vector<engine::RequestResult>& results, bool client_gone);

  private:
    const ServerConfig& config_;
    MetricsRegistry& metrics_;
    Logger& logger_;
    mutable std::mutex model_mutex_;
    LoadedModel model_;
    double load_seconds_ = 0;
    std::atomic<bool> shutting_down_{false};
    std::mutex jobs_mutex_;
    std::condition_variable jobs_changed_;
    std::set<std::shared_ptr<GenerationJob>> jobs_;
};

// The error that ended a generation, if the engine ended one: the request fails as a whole
// (500 for the engine's or the model's fault, 422/400 when the request's own controls caused it).
std::optional<Error> generation_error(const std::vector<engine::RequestResult>& results);

}  // namespace llmserve::server
