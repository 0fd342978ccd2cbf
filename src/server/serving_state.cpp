#include "server/serving_state.h"

#include <fmt/format.h>

#include <algorithm>

#include "model/model.h"
#include "server/errors.h"

namespace llmserve::server {

std::optional<Error> generation_error(const std::vector<engine::RequestResult>& results) {
    for (const engine::RequestResult& result : results) {
        if (!result.error.empty()) {
            return Error(result.error_code, fmt::format("generation failed: {}", result.error));
        }
    }
    return std::nullopt;
}

ServingState::ServingState(const ServerConfig& config, MetricsRegistry& metrics, Logger& logger)
    : config_(config), metrics_(metrics), logger_(logger) {}

void ServingState::attach(LoadedModel model, double load_seconds) {
    std::lock_guard lock(model_mutex_);
    model_ = std::move(model);
    load_seconds_ = load_seconds;
}

LoadedModel ServingState::require_model() const {
    if (shutting_down_) throw Rejection{not_ready("the server is shutting down", 5), "not_ready"};
    std::lock_guard lock(model_mutex_);
    if (!model_.engine) throw Rejection{not_ready("the model is still loading", 2), "not_ready"};
    return model_;
}

std::shared_ptr<engine::Engine> ServingState::engine_if_loaded() const {
    std::lock_guard lock(model_mutex_);
    return model_.engine;
}

double ServingState::load_seconds() const {
    std::lock_guard lock(model_mutex_);
    return load_seconds_;
}

engine::GenerationSettings ServingState::generation_settings(const engine::Engine& e) const {
    return engine::resolve_generation_settings(explicit_generation_settings(config_),
                                               e.model().generation_defaults());
}

RequestLimits ServingState::request_limits(const engine::Engine& e) const {
    const model::ModelConfig& model_config = e.model().config();
    RequestLimits limits;
    limits.model_name = e.model().name();
    limits.vocab_size = model_config.vocab_size;
    limits.n_positions = model_config.n_positions;
    limits.max_n = kMaxSamplesPerPrompt;
    limits.max_prompts = kMaxPromptsPerRequest;
    limits.max_sequences = kMaxSequencesPerRequest;
    const engine::GenerationSettings settings = generation_settings(e);
    limits.default_max_new_tokens = settings.max_new_tokens;
    limits.default_temperature = static_cast<float>(settings.temperature);
    limits.default_top_p = static_cast<float>(settings.top_p);
    limits.default_top_k = settings.top_k;
    limits.default_repetition_penalty = settings.repetition_penalty;
    limits.strict_requests = config_.strict_requests;
    return limits;
}

ServingState::JobLease::JobLease(ServingState& state, std::shared_ptr<GenerationJob> job)
    : state_(state), job_(job) {
    std::lock_guard lock(state_.jobs_mutex_);
    state_.jobs_.insert(std::move(job));
}

ServingState::JobLease::~JobLease() {
    {
        std::lock_guard lock(state_.jobs_mutex_);
        state_.jobs_.erase(job_);
    }
    state_.jobs_changed_.notify_all();
}

std::size_t ServingState::running_jobs() {
    std::lock_guard lock(jobs_mutex_);
    return jobs_.size();
}

bool ServingState::wait_for_generations(Clock::time_point deadline) {
    std::unique_lock lock(jobs_mutex_);
    return jobs_changed_.wait_until(lock, deadline, [&] { return jobs_.empty(); });
}

void ServingState::cancel_generations() {
    std::unique_lock lock(jobs_mutex_);
    for (const auto& job : jobs_) job->cancel();
    jobs_changed_.wait(lock, [&] { return jobs_.empty(); });
}

void ServingState::record_generation(RequestContext& context,
                                     const std::vector<engine::RequestResult>& results,
                                     bool client_gone) {
    const auto seconds = [](double ms) { return ms / 1000.0; };
    for (const engine::RequestResult& result : results) {
        context.completion_tokens += result.completion_tokens;
        metrics_.counter("llmserve_prompt_tokens_total", "Prompt tokens processed.")
            .inc(result.prompt_tokens);
        metrics_.counter("llmserve_generation_tokens_total", "Tokens generated.")
            .inc(result.completion_tokens);
        metrics_
            .histogram("llmserve_request_queue_seconds",
                       "Time a request waited before the engine scheduled it.",
                       latency_buckets_seconds())
            .observe(seconds(result.timing.queue_ms));
        bool any_token = false;
        for (const engine::SequenceResult& sequence : result.sequences) {
            any_token = any_token || !sequence.tokens.empty();
            const std::string reason(engine::to_string(sequence.finish_reason));
            if (std::find(context.finish_reasons.begin(), context.finish_reasons.end(), reason) ==
                context.finish_reasons.end()) {
                context.finish_reasons.push_back(reason);
            }
            metrics_
                .counter("llmserve_sequences_finished_total",
                         "Generated sequences by finish reason.", {{"reason", reason}})
                .inc();
            Histogram& inter_token = metrics_.histogram(
                "llmserve_inter_token_latency_seconds",
                "Time between two consecutive tokens of a sequence (one observation per gap).",
                latency_buckets_seconds());
            for (const double gap_ms : sequence.inter_token_ms)
                inter_token.observe(seconds(gap_ms));
        }
        if (any_token) {
            metrics_
                .histogram("llmserve_time_to_first_token_seconds",
                           "Time from submission to the first generated token.",
                           latency_buckets_seconds())
                .observe(seconds(result.timing.queue_ms + result.timing.prefill_ms));
        }
    }
    if (const auto error = generation_error(results)) context.engine_error = error->what();
    if (client_gone) {
        context.client_gone = true;
        metrics_
            .counter("llmserve_client_disconnects_total",
                     "Generations cancelled because the client went away.")
            .inc();
    }
}

}  // namespace llmserve::server
