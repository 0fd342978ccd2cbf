// The server's configuration: built-in defaults, overridden by environment variables, overridden
// by command-line flags. Every value is parsed and validated here, in one place, so that a bad
// value stops start-up with a message naming the variable, the value and what is allowed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "engine/generation_settings.h"

namespace llmserve::server {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
enum class LogFormat { kText, kJson };

std::string_view to_string(LogLevel level);
std::string_view to_string(LogFormat format);

// Where an effective value came from (shown by `llmserve serve --print-config`).
enum class ConfigSource { kDefault, kEnvironment, kFlag };
std::string_view to_string(ConfigSource source);

struct ServerConfig {
    std::string model_name = "models/gpt2-brown-mini";  // MODEL_NAME: directory or Hub name
    // Request defaults (engine/generation_settings.h holds the built-in values; a model's
    // generation_config.json overrides them unless these are set explicitly).
    int max_length = engine::GenerationSettings{}.max_new_tokens;   // MAX_LENGTH: new tokens
    double temperature = engine::GenerationSettings{}.temperature;  // TEMPERATURE
    double top_p = engine::GenerationSettings{}.top_p;              // TOP_P: nucleus mass
    std::string host = "0.0.0.0";                                   // HOST
    int port = 8000;                    // PORT; 0 = any free port (logged at start-up)
    std::vector<std::string> api_keys;  // API_KEYS: comma-separated; empty = no authentication
    bool auth_exempt_probes = false;    // AUTH_EXEMPT_PROBES: /health, /ready, /metrics open
    int rate_limit_rpm = 0;             // RATE_LIMIT_RPM: requests per minute per client; 0 = off
    int rate_limit_burst = 0;           // RATE_LIMIT_BURST: bucket size; 0 = max(1, rpm / 6)
    double request_timeout_s = 30;      // REQUEST_TIMEOUT_S: generation deadline from arrival
    int max_concurrent_requests = 32;   // MAX_CONCURRENT_REQUESTS: sequences decoded together
    int max_queue = 128;                // MAX_QUEUE: requests waiting beyond those; then 503
    int max_batch_tokens = 256;         // MAX_BATCH_TOKENS: tokens one engine step computes
    int kv_cache_mb = 0;                // KV_CACHE_MB: KV cache budget in MiB; 0 = auto
    backend::KvFormat kv_cache_dtype = backend::KvFormat::kF32;  // KV_CACHE_DTYPE
    long long max_body_bytes = 1 << 20;  // MAX_BODY_BYTES: larger request bodies get 413
    // MAX_RESPONSE_BYTES: a non-streamed request whose response could be larger (upper estimate
    // before generation) is refused; the body and its JSON tree are held in memory whole
    long long max_response_bytes = 64LL << 20;
    double request_read_timeout_s = 10;    // REQUEST_READ_TIMEOUT_S: headers + body must arrive
    int max_connections_per_client = 256;  // MAX_CONNECTIONS_PER_CLIENT: per address; 0 = off
    std::string cache_dir;                 // CACHE_DIR: model cache (used by Hub downloads)
    std::string device = "auto";           // DEVICE: auto, cpu, cuda or cuda:N
    int threads = 0;                       // THREADS: compute threads; 0 = one per core
    bool cuda_graphs = true;               // CUDA_GRAPHS: replay decode steps as CUDA graphs
    backend::WeightFormat dtype = backend::WeightFormat::kAuto;  // DTYPE: weights for compute
    LogLevel log_level = LogLevel::kInfo;                        // LOG_LEVEL
    LogFormat log_format = LogFormat::kText;                     // LOG_FORMAT
    double shutdown_grace_s = 10;  // SHUTDOWN_GRACE_S: how long in-flight requests may finish
    bool strict_requests = false;  // STRICT_REQUESTS: OpenAI routes refuse unknown fields
    std::string chat_template;     // CHAT_TEMPLATE: a template file overriding the model's
    std::string reasoning_parser = "none";  // REASONING_PARSER: none or think
    // CORS_ALLOW_ORIGINS: browser origins ("https://app.example.com") allowed to call the API
    // from another site, or "*" for any; empty = no CORS headers (browsers refuse cross-site calls)
    std::vector<std::string> cors_allow_origins;
    // WEB_DIR: the playground's folder, whose files are public; empty = the one built in
    std::string web_dir;
    // TOOL_CALL_PARSER: auto (from the chat template), hermes, llama3_json or none
    std::string tool_call_parser = "auto";

    // Source of each setting, keyed by its environment variable name.
    std::map<std::string, ConfigSource, std::less<>> sources;

    // The bucket size the rate limiter uses (resolves the 0 default).
    int effective_rate_limit_burst() const;
    // The Access-Control-Allow-Origin to answer a request from `origin` with ("*" or the origin
    // itself); nullopt when the origin is not allowed (or none was sent).
    std::optional<std::string> cors_allowed_origin(std::string_view origin) const;
};

// MAX_LENGTH, TEMPERATURE and TOP_P where they were set (by a variable or a flag), to override a
// model's generation_config.json; those left unset keep the model's values.
engine::ExplicitSettings explicit_generation_settings(const ServerConfig& config);

// One configurable setting: its environment variable, its flag and what it means.
struct SettingInfo {
    std::string_view env;   // "PORT"
    std::string_view flag;  // "--port"
    std::string_view help;  // one line, with the allowed values and the default
};
const std::vector<SettingInfo>& setting_infos();

// The KV cache budget for KV_CACHE_MB=0 (auto): the engine's default, every running sequence at
// full context (`all_sequences_bytes`) but at most 1 GiB, lowered to a quarter of the memory
// `available` once the model is loaded (when that figure is known), yet never below one full
// context (`one_context_bytes`), the least the engine accepts.
std::size_t auto_kv_cache_bytes(std::size_t one_context_bytes, std::size_t all_sequences_bytes,
                                std::optional<std::uint64_t> available);

// Looks up an environment variable; nullopt when unset.
using EnvironmentLookup = std::function<std::optional<std::string>(std::string_view name)>;
EnvironmentLookup process_environment();

// The settings a command reads, by environment name; empty = all of them (`serve`).
using SettingNames = std::vector<std::string_view>;

// Builds the effective configuration: `defaults` <- environment <- flags, for the settings in
// `only` (the others keep their defaults). `flags` maps a setting's environment name ("PORT") to
// the flag's raw text. Throws Error(kInvalidArgument, param = the variable name) naming the
// variable (and flag), the value and what is allowed. An environment variable that is set but
// empty counts as unset.
ServerConfig resolve_config(const EnvironmentLookup& environment,
                            const std::map<std::string, std::string, std::less<>>& flags,
                            ServerConfig defaults = {}, const SettingNames& only = {});

// One line per setting (of `only`, or all): "NAME=value  (source)". API keys are never shown,
// only their count.
std::string describe_config(const ServerConfig& config, const SettingNames& only = {});

}  // namespace llmserve::server
