#include "server/status.h"

#include "model/model.h"
#include "server/process_stats.h"
#include "server/system_memory.h"

namespace llmserve::server {
namespace {

using Json = nlohmann::json;

// The architecture spec the forward pass runs (what config.json's family reader derived).
Json spec_json(const model::ModelConfig& c) {
    Json spec = {{"norm", model::to_string(c.norm)},
                 {"norm_eps", c.layer_norm_epsilon},
                 {"n_kv_head", c.n_kv_head},
                 {"head_dim", c.head_dim},
                 {"n_inner", c.n_inner},
                 {"mlp", c.gated_mlp ? "gated" : "plain"},
                 {"activation", model::to_string(c.activation)},
                 {"qkv_bias", c.qkv_bias},
                 {"o_bias", c.o_bias},
                 {"mlp_bias", c.mlp_bias},
                 {"qk_norm", c.qk_norm},
                 {"tie_word_embeddings", c.tie_word_embeddings},
                 {"sliding_windows", c.layer_windows}};
    if (c.rope) {
        spec["positions"] = "rope";
        spec["rope"] = {{"type", model::to_string(c.rope->type)},
                        {"theta", c.rope->theta},
                        {"rotary_dim", c.rope->rotary_dim},
                        {"factor", c.rope->factor}};
    } else {
        spec["positions"] = "learned";
    }
    return spec;
}

// Tensors and parameters per dtype the checkpoint stores (a GGUF file's quantization mix).
Json stored_dtypes_json(const model::Model& model) {
    Json out = Json::object();
    for (const auto& [dtype, share] : model.stored_dtypes())
        out[dtype] = {{"tensors", share.tensors}, {"parameters", share.parameters}};
    return out;
}

}  // namespace

Json info_json(const ServingState& state, bool auth_enabled) {
    const LoadedModel loaded = state.require_model();
    const auto& e = loaded.engine;
    const ServerConfig& config = state.config();
    const model::Model& model = e->model();
    const model::ModelConfig& c = model.config();
    const engine::GenerationSettings settings = state.generation_settings(*e);
    Json model_json = {{"name", model.name()},
                       {"path", model.directory().string()},
                       {"architecture", c.family()},
                       {"spec", spec_json(c)},
                       {"n_positions", c.n_positions},
                       {"vocab_size", c.vocab_size},
                       {"n_embd", c.n_embd},
                       {"n_layer", c.n_layer},
                       {"n_head", c.n_head},
                       {"parameters", model.parameter_count()},
                       {"dtype", model.dtype()},
                       {"stored_dtype", model.stored_dtype()},
                       {"stored_dtypes", stored_dtypes_json(model)},
                       {"compute_formats", model.compute_formats()},
                       {"weight_bytes", model.weight_bytes()},
                       {"eos_token_ids", c.eos_token_ids},
                       {"bos_token_id", c.bos_token_id ? Json(*c.bos_token_id) : Json(nullptr)},
                       {"load_seconds", state.load_seconds()},
                       {"chat_template", loaded.chat_template.has_value()}};
    return {{"version", LLMSERVE_VERSION},
            {"model", std::move(model_json)},
            {"device", model.device_name()},
            {"threads", model.backend().threads()},
            {"defaults",
             {{"max_length", settings.max_new_tokens},
              {"temperature", settings.temperature},
              {"top_p", settings.top_p},
              {"top_k", settings.top_k},
              {"repetition_penalty", settings.repetition_penalty}}},
            {"limits",
             {{"max_body_bytes", config.max_body_bytes},
              {"max_concurrent_requests", config.max_concurrent_requests},
              {"max_queue", config.max_queue},
              {"request_timeout_s", config.request_timeout_s},
              {"max_samples_per_prompt", kMaxSamplesPerPrompt},
              {"max_prompts_per_request", kMaxPromptsPerRequest},
              {"max_sequences_per_request", kMaxSequencesPerRequest},
              {"max_stop_strings", engine::kMaxStopStrings},
              {"max_logprobs", engine::kMaxLogprobs}}},
            {"auth", {{"enabled", auth_enabled}, {"probes_open", config.auth_exempt_probes}}},
            {"rate_limit",
             {{"requests_per_minute", config.rate_limit_rpm},
              {"burst", config.rate_limit_rpm > 0 ? config.effective_rate_limit_burst() : 0}}}};
}

namespace {

// The process_* metrics under their standard names, so that dashboards made for any
// Prometheus client library work unchanged.
void refresh_process_metrics(MetricsRegistry& metrics) {
    const ProcessStats process = read_process_stats();
    if (process.cpu_seconds) {
        metrics
            .counter("process_cpu_seconds_total",
                     "Total user and system CPU time spent in seconds.")
            .advance_to(*process.cpu_seconds);
    }
    const auto set_gauge = [&](std::string_view name, std::string_view help, auto value) {
        if (value) metrics.gauge(name, help).set(static_cast<double>(*value));
    };
    set_gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
              process.resident_memory_bytes);
    set_gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.",
              process.virtual_memory_bytes);
    set_gauge("process_start_time_seconds",
              "Start time of the process since unix epoch in seconds.", process.start_time_seconds);
    set_gauge("process_open_fds", "Number of open file descriptors.", process.open_fds);
    set_gauge("process_max_fds", "Maximum number of open file descriptors.", process.max_fds);
}

}  // namespace

void refresh_gauges(ServingState& state) {
    MetricsRegistry& metrics = state.metrics();
    refresh_process_metrics(metrics);
    if (const auto available = available_memory_bytes()) {
        metrics
            .gauge("llmserve_system_memory_available_bytes",
                   "Memory available to the server (MemAvailable, within any cgroup limit).")
            .set(static_cast<double>(*available));
    }
    const std::shared_ptr<engine::Engine> e = state.engine_if_loaded();
    metrics
        .gauge("llmserve_generation_requests_in_flight",
               "HTTP generation requests being served (waiting or running).")
        .set(static_cast<double>(state.running_jobs()));
    metrics.gauge("llmserve_model_loaded", "1 once the model is loaded.").set(e ? 1 : 0);
    if (!e) return;
    const engine::EngineStats stats = e->stats();
    metrics.gauge("llmserve_sequences_running", "Sequences the engine is decoding.")
        .set(stats.running_sequences);
    metrics
        .gauge("llmserve_requests_waiting",
               "Engine requests (one per prompt, its samples included) queued for the engine.")
        .set(stats.waiting_requests);
    metrics.gauge("llmserve_engine_last_step_sequences", "Sequences in the engine's latest step.")
        .set(stats.last_batch_sequences);
    metrics.counter("llmserve_engine_steps_total", "Engine steps (forward passes).")
        .advance_to(static_cast<double>(stats.steps));
    metrics
        .counter("llmserve_engine_step_sequences_total",
                 "Sum over steps of the sequences in the batch (divide by steps: mean batch "
                 "size).")
        .advance_to(static_cast<double>(stats.step_sequences_total));
    metrics.gauge("llmserve_kv_cache_blocks", "KV cache blocks in the pool.")
        .set(stats.kv_blocks_total);
    metrics.gauge("llmserve_kv_cache_blocks_free", "Free KV cache blocks.")
        .set(stats.kv_blocks_free);
    metrics
        .counter("llmserve_prefix_cache_queries_total",
                 "Full prompt blocks looked up in the prefix cache.")
        .advance_to(static_cast<double>(stats.prefix_cache_queries));
    metrics
        .counter("llmserve_prefix_cache_hits_total",
                 "Full prompt blocks reused from the prefix cache instead of recomputed.")
        .advance_to(static_cast<double>(stats.prefix_cache_hits));
    metrics.counter("llmserve_engine_requests_cancelled_total", "Requests the engine cancelled.")
        .advance_to(static_cast<double>(stats.requests_cancelled));
    metrics.counter("llmserve_engine_requests_timed_out_total", "Requests that hit their deadline.")
        .advance_to(static_cast<double>(stats.requests_timed_out));
    metrics
        .counter("llmserve_engine_requests_failed_total",
                 "Requests the engine ended with an error (their clients got a 5xx/422 or an "
                 "error event).")
        .advance_to(static_cast<double>(stats.requests_failed));
    metrics
        .counter("llmserve_engine_step_failures_total",
                 "Engine steps that failed as a whole: every request in the step ended with the "
                 "error.")
        .advance_to(static_cast<double>(stats.step_failures));
}

}  // namespace llmserve::server
