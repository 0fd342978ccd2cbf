#include "server/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>

#include <unistd.h>

#include "common/error.h"

namespace llmserve::server {
namespace {

// What a setting's parser reports: nullopt on success, else "what is allowed".
using ParseFailure = std::optional<std::string>;

struct Setting {
    SettingInfo info;
    std::function<ParseFailure(ServerConfig&, std::string_view raw)> apply;
    std::function<std::string(const ServerConfig&)> show;
};

template <typename Int>
ParseFailure parse_int(std::string_view raw, Int min, Int max, Int& out) {
    const auto expected = fmt::format("an integer in [{}, {}]", min, max);
    Int value{};
    const char* end = raw.data() + raw.size();
    const auto [ptr, ec] = std::from_chars(raw.data(), end, value);
    if (raw.empty() || ec != std::errc{} || ptr != end || value < min || value > max) {
        return expected;
    }
    out = value;
    return std::nullopt;
}

// A finite number in [min, max] (or (min, max] when min_exclusive).
template <typename Float>
ParseFailure parse_float(std::string_view raw, double min, double max, bool min_exclusive,
                         Float& out) {
    const auto expected = fmt::format("a number in {}{}, {}]", min_exclusive ? "(" : "[", min, max);
    double value = 0;
    const char* end = raw.data() + raw.size();
    const auto [ptr, ec] = std::from_chars(raw.data(), end, value);
    if (raw.empty() || ec != std::errc{} || ptr != end || !std::isfinite(value)) return expected;
    if (value > max || value < min || (min_exclusive && value == min)) return expected;
    out = static_cast<Float>(value);
    return std::nullopt;
}

ParseFailure parse_bool(std::string_view raw, bool& out) {
    std::string lower(raw);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower == "1" || lower == "true" || lower == "yes" || lower == "on") {
        out = true;
    } else if (lower == "0" || lower == "false" || lower == "no" || lower == "off") {
        out = false;
    } else {
        return std::string("one of true, false, 1, 0, yes, no, on, off");
    }
    return std::nullopt;
}

// One of `names` (exact spelling); `values[i]` is what names[i] means.
template <typename Enum>
ParseFailure parse_choice(std::string_view raw, const std::vector<std::string_view>& names,
                          const std::vector<Enum>& values, Enum& out) {
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (raw == names[i]) {
            out = values[i];
            return std::nullopt;
        }
    }
    return fmt::format("one of {}", fmt::join(names, ", "));
}

bool is_token_char(char c) {
    return c > 0x20 && c < 0x7f;  // printable ASCII without space: safe inside an HTTP header
}

ParseFailure parse_api_keys(std::string_view raw, std::vector<std::string>& out) {
    std::vector<std::string> keys;
    std::size_t start = 0;
    while (start <= raw.size()) {
        const std::size_t comma = std::min(raw.find(',', start), raw.size());
        std::string_view key = raw.substr(start, comma - start);
        while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
        while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
        if (key.empty() || !std::all_of(key.begin(), key.end(), is_token_char)) {
            return std::string(
                "a comma-separated list of non-empty keys of printable ASCII without spaces");
        }
        keys.emplace_back(key);
        start = comma + 1;
    }
    out = std::move(keys);
    return std::nullopt;
}

std::string lowercase(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

// An origin as browsers send it: scheme://host[:port], nothing after.
bool is_origin(std::string_view origin) {
    std::string_view rest = origin;
    if (rest.starts_with("https://")) {
        rest.remove_prefix(8);
    } else if (rest.starts_with("http://")) {
        rest.remove_prefix(7);
    } else {
        return false;
    }
    return !rest.empty() && std::all_of(rest.begin(), rest.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' ||
               c == '[' || c == ']';
    });
}

// CORS_ALLOW_ORIGINS: "*", or a comma-separated list of origins (kept lowercase, as browsers
// send them).
ParseFailure parse_cors_origins(std::string_view raw, std::vector<std::string>& out) {
    const std::string expected =
        "* (any origin) or a comma-separated list of origins such as "
        "https://app.example.com,http://localhost:3000 (scheme, host and port; no path)";
    std::vector<std::string> origins;
    std::size_t start = 0;
    while (start <= raw.size()) {
        const std::size_t comma = std::min(raw.find(',', start), raw.size());
        std::string_view origin = raw.substr(start, comma - start);
        while (!origin.empty() && origin.front() == ' ') origin.remove_prefix(1);
        while (!origin.empty() && origin.back() == ' ') origin.remove_suffix(1);
        if (origin != "*" && !is_origin(origin)) return expected;
        origins.push_back(lowercase(origin));
        start = comma + 1;
    }
    const bool any = std::find(origins.begin(), origins.end(), "*") != origins.end();
    if (any && origins.size() > 1) return expected;
    out = std::move(origins);
    return std::nullopt;
}

ParseFailure parse_host(std::string_view raw, std::string& out) {
    const bool ok =
        !raw.empty() && raw.size() <= 253 && std::all_of(raw.begin(), raw.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
                   c == ':' || c == '_';
        });
    if (!ok) return std::string("an IP address or host name (e.g. 0.0.0.0, 127.0.0.1, ::)");
    out = raw;
    return std::nullopt;
}

ParseFailure parse_cache_dir(std::string_view raw, std::string& out) {
    std::error_code ec;
    const std::filesystem::path path(raw);
    if (std::filesystem::exists(path, ec) && !std::filesystem::is_directory(path, ec)) {
        return std::string("a directory (this path exists and is not one)");
    }
    out = raw;
    return std::nullopt;
}

// CHAT_TEMPLATE: a readable regular file (its template is parsed when the model loads).
ParseFailure parse_template_file(std::string_view raw, std::string& out) {
    std::error_code ec;
    const std::filesystem::path path(raw);
    if (!std::filesystem::is_regular_file(path, ec) || ::access(path.c_str(), R_OK) != 0) {
        return std::string("a readable Jinja chat template file (e.g. /path/chat_template.jinja)");
    }
    out = raw;
    return std::nullopt;
}

ParseFailure parse_device(std::string_view raw, std::string& out) {
    const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
    const bool numbered_cuda = raw.starts_with("cuda:") && raw.size() > 5 && raw.size() <= 8 &&
                               std::all_of(raw.begin() + 5, raw.end(), is_digit);
    if (raw != "auto" && raw != "cpu" && raw != "cuda" && !numbered_cuda) {
        return std::string("one of auto, cpu, cuda, cuda:N");
    }
    out = raw;
    return std::nullopt;
}

std::string show_float(double value) {
    return fmt::format("{}", value);
}

const std::vector<Setting>& settings() {
    static const std::vector<Setting> table = {
        {{"MODEL_NAME", "--model",
          "model directory, or Hugging Face name (gpt2, org/name@revision) fetched into the cache"},
         [](ServerConfig& c, std::string_view raw) -> ParseFailure {
             if (raw.empty()) return std::string("a model directory or Hugging Face name");
             c.model_name = raw;
             return std::nullopt;
         },
         [](const ServerConfig& c) { return c.model_name; }},
        {{"MAX_LENGTH", "--max-length", "default new tokens per request, 1..1000000 (100)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_int(raw, 1, 1'000'000, c.max_length);
         },
         [](const ServerConfig& c) { return std::to_string(c.max_length); }},
        {{"TEMPERATURE", "--temperature", "default temperature, 0..100; 0 = greedy (0.7)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_float(raw, 0.0, 100.0, false, c.temperature);
         },
         [](const ServerConfig& c) { return show_float(c.temperature); }},
        {{"TOP_P", "--top-p", "default nucleus mass, (0, 1]; 1 = off (0.9)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_float(raw, 0.0, 1.0, true, c.top_p);
         },
         [](const ServerConfig& c) { return show_float(c.top_p); }},
        {{"HOST", "--host", "address to listen on (0.0.0.0)"},
         [](ServerConfig& c, std::string_view raw) { return parse_host(raw, c.host); },
         [](const ServerConfig& c) { return c.host; }},
        {{"PORT", "--port", "TCP port, 0..65535; 0 = any free port (8000)"},
         [](ServerConfig& c, std::string_view raw) { return parse_int(raw, 0, 65535, c.port); },
         [](const ServerConfig& c) { return std::to_string(c.port); }},
        {{"API_KEYS", "--api-keys", "comma-separated bearer keys; unset = no authentication"},
         [](ServerConfig& c, std::string_view raw) { return parse_api_keys(raw, c.api_keys); },
         [](const ServerConfig& c) {
             return c.api_keys.empty() ? std::string("(none)")
                                       : fmt::format("({} keys, hidden)", c.api_keys.size());
         }},
        {{"AUTH_EXEMPT_PROBES", "--auth-exempt-probes",
          "leave /health, /ready and /metrics open when API_KEYS is set (false)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_bool(raw, c.auth_exempt_probes);
         },
         [](const ServerConfig& c) {
             return std::string(c.auth_exempt_probes ? "true" : "false");
         }},
        {{"RATE_LIMIT_RPM", "--rate-limit-rpm",
          "requests per minute per API key (or client address), 0..1000000; 0 = off (0)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_int(raw, 0, 1'000'000, c.rate_limit_rpm);
         },
         [](const ServerConfig& c) { return std::to_string(c.rate_limit_rpm); }},
        {{"RATE_LIMIT_BURST", "--rate-limit-burst",
          "requests allowed at once before the rate applies, 0..1000000; 0 = RPM/6 (0)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_int(raw, 0, 1'000'000, c.rate_limit_burst);
         },
         [](const ServerConfig& c) { return std::to_string(c.rate_limit_burst); }},
        {{"CORS_ALLOW_ORIGINS", "--cors-allow-origins",
          "browser origins allowed to call the API from other sites: * or a comma-separated list "
          "(https://app.example.com); unset = no CORS headers (unset)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_cors_origins(raw, c.cors_allow_origins);
         },
         [](const ServerConfig& c) {
             return c.cors_allow_origins.empty()
                        ? std::string("(unset)")
                        : fmt::format("{}", fmt::join(c.cors_allow_origins, ","));
         }},
        {{"REQUEST_TIMEOUT_S", "--request-timeout",
          "seconds a generation may take from arrival, (0, 86400] (30)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_float(raw, 0.0, 86400.0, true, c.request_timeout_s);
         },
         [](const ServerConfig& c) { return show_float(c.request_timeout_s); }},
        {{"MAX_CONCURRENT_REQUESTS", "--max-concurrent-requests",
          "sequences generated together, 1..1024 (32)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_int(raw, 1, 1024, c.max_concurrent_requests);
         },
         [](const ServerConfig& c) { return std::to_string(c.max_concurrent_requests); }},
        {{"MAX_QUEUE", "--max-queue",
          "requests waiting beyond those (one per prompt), 1..4096; then 503 (128)"},
         [](ServerConfig& c, std::string_view raw) { return parse_int(raw, 1, 4096, c.max_queue); },
         [](const ServerConfig& c) { return std::to_string(c.max_queue); }},
        {{"MAX_BATCH_TOKENS", "--max-batch-tokens",
          "tokens one engine step computes: decode rows plus prompt chunks, 16..65536; smaller = "
          "smoother streams, larger = faster long prompts (256)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_int(raw, 16, 65536, c.max_batch_tokens);
         },
         [](const ServerConfig& c) { return std::to_string(c.max_batch_tokens); }},
        {{"KV_CACHE_MB", "--kv-cache-mb",
          "KV cache budget in MiB, 0..1048576; 0 = auto: every running sequence at full context, "
          "at most 1 GiB and a quarter of the memory left after loading the model (0)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_int(raw, 0, 1 << 20, c.kv_cache_mb);
         },
         [](const ServerConfig& c) { return std::to_string(c.kv_cache_mb); }},
        {{"KV_CACHE_DTYPE", "--kv-cache-dtype",
          "KV cache format: f32, or f16 (twice the tokens per MiB, less attention traffic) "
          "(f32)"},
         [](ServerConfig& c, std::string_view raw) {
             using backend::KvFormat;
             return parse_choice(raw, {"f32", "f16"}, {KvFormat::kF32, KvFormat::kF16},
                                 c.kv_cache_dtype);
         },
         [](const ServerConfig& c) { return std::string(backend::to_string(c.kv_cache_dtype)); }},
        {{"MAX_BODY_BYTES", "--max-body-bytes", "largest request body, 64..1073741824 (1048576)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_int(raw, 64LL, 1LL << 30, c.max_body_bytes);
         },
         [](const ServerConfig& c) { return std::to_string(c.max_body_bytes); }},
        {{"MAX_RESPONSE_BYTES", "--max-response-bytes",
          "largest non-streamed response, estimated before generation (prompts x n x max tokens, "
          "more with logprobs); larger requests are refused, streams are not limited, "
          "65536..17179869184 (67108864)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_int(raw, 65536LL, 16LL << 30, c.max_response_bytes);
         },
         [](const ServerConfig& c) { return std::to_string(c.max_response_bytes); }},
        {{"REQUEST_READ_TIMEOUT_S", "--request-read-timeout",
          "seconds a client has to send a request's headers and body, (0, 3600] (10)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_float(raw, 0.0, 3600.0, true, c.request_read_timeout_s);
         },
         [](const ServerConfig& c) { return show_float(c.request_read_timeout_s); }},
        {{"MAX_CONNECTIONS_PER_CLIENT", "--max-connections-per-client",
          "open connections one client address may hold, 0..1000000; 0 = unlimited (256)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_int(raw, 0, 1'000'000, c.max_connections_per_client);
         },
         [](const ServerConfig& c) { return std::to_string(c.max_connections_per_client); }},
        {{"CACHE_DIR", "--cache-dir", "extra model cache directory (unset)"},
         [](ServerConfig& c, std::string_view raw) { return parse_cache_dir(raw, c.cache_dir); },
         [](const ServerConfig& c) { return c.cache_dir.empty() ? "(unset)" : c.cache_dir; }},
        {{"WEB_DIR", "--web-dir",
          "the playground's folder; every file below it is public (the repository's web/)"},
         [](ServerConfig& c, std::string_view raw) -> ParseFailure {
             c.web_dir = raw;
             return std::nullopt;
         },
         [](const ServerConfig& c) {
             return c.web_dir.empty() ? fmt::format("(built-in: {})", LLMSERVE_WEB_DIR) : c.web_dir;
         }},
        {{"DEVICE", "--device",
          "auto (CUDA when built in and visible, else CPU), cpu, cuda, cuda:N"},
         [](ServerConfig& c, std::string_view raw) { return parse_device(raw, c.device); },
         [](const ServerConfig& c) { return c.device; }},
        {{"THREADS", "--threads", "compute threads, 0..1024; 0 = one per core (0)"},
         [](ServerConfig& c, std::string_view raw) { return parse_int(raw, 0, 1024, c.threads); },
         [](const ServerConfig& c) { return std::to_string(c.threads); }},
        {{"CUDA_GRAPHS", "--cuda-graphs",
          "replay decode steps as CUDA graphs on a GPU; false launches every kernel (true)"},
         [](ServerConfig& c, std::string_view raw) { return parse_bool(raw, c.cuda_graphs); },
         [](const ServerConfig& c) { return std::string(c.cuda_graphs ? "true" : "false"); }},
        {{"DTYPE", "--dtype",
          "weight format for compute: auto (as stored), f32, f16, bf16, q8, q4 (auto)"},
         [](ServerConfig& c, std::string_view raw) {
             using backend::WeightFormat;
             return parse_choice(raw, {"auto", "f32", "f16", "bf16", "q8", "q4"},
                                 {WeightFormat::kAuto, WeightFormat::kF32, WeightFormat::kF16,
                                  WeightFormat::kBF16, WeightFormat::kQ8, WeightFormat::kQ4},
                                 c.dtype);
         },
         [](const ServerConfig& c) { return std::string(backend::to_string(c.dtype)); }},
        {{"LOG_LEVEL", "--log-level", "debug, info, warn or error (info)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_choice(
                 raw, {"debug", "info", "warn", "error"},
                 {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError},
                 c.log_level);
         },
         [](const ServerConfig& c) { return std::string(to_string(c.log_level)); }},
        {{"LOG_FORMAT", "--log-format", "text or json (text)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_choice(raw, {"text", "json"}, {LogFormat::kText, LogFormat::kJson},
                                 c.log_format);
         },
         [](const ServerConfig& c) { return std::string(to_string(c.log_format)); }},
        {{"STRICT_REQUESTS", "--strict-requests",
          "refuse unknown request fields on the OpenAI routes too (false: ignored, as OpenAI "
          "clients send vendor extras; /generate always refuses them)"},
         [](ServerConfig& c, std::string_view raw) { return parse_bool(raw, c.strict_requests); },
         [](const ServerConfig& c) { return std::string(c.strict_requests ? "true" : "false"); }},
        {{"CHAT_TEMPLATE", "--chat-template",
          "a Jinja chat template file used instead of the model's own (unset)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_template_file(raw, c.chat_template);
         },
         [](const ServerConfig& c) {
             return c.chat_template.empty() ? "(unset)" : c.chat_template;
         }},
        {{"REASONING_PARSER", "--reasoning-parser",
          "think: a leading <think>...</think> block of a chat reply becomes reasoning_content; "
          "none (none)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_choice(raw, {"none", "think"},
                                 {std::string("none"), std::string("think")}, c.reasoning_parser);
         },
         [](const ServerConfig& c) { return c.reasoning_parser; }},
        {{"TOOL_CALL_PARSER", "--tool-call-parser",
          "how chat replies write tool calls: hermes (<tool_call> blocks), llama3_json (a JSON "
          "call), none (never parsed), auto: from the chat template (auto)"},
         [](ServerConfig& c, std::string_view raw) {
             const std::vector<std::string_view> names = {"auto", "hermes", "llama3_json", "none"};
             return parse_choice(raw, names, std::vector<std::string>(names.begin(), names.end()),
                                 c.tool_call_parser);
         },
         [](const ServerConfig& c) { return c.tool_call_parser; }},
        {{"SHUTDOWN_GRACE_S", "--shutdown-grace",
          "seconds in-flight requests may finish after SIGTERM, [0, 3600] (10)"},
         [](ServerConfig& c, std::string_view raw) {
             return parse_float(raw, 0.0, 3600.0, false, c.shutdown_grace_s);
         },
         [](const ServerConfig& c) { return show_float(c.shutdown_grace_s); }},
    };
    return table;
}

// Whether a command that reads `only` (empty: every setting) reads `setting`.
bool selected(const Setting& setting, const SettingNames& only) {
    return only.empty() || std::find(only.begin(), only.end(), setting.info.env) != only.end();
}

}  // namespace

std::string_view to_string(LogLevel level) {
    switch (level) {
        case LogLevel::kDebug:
            return "debug";
        case LogLevel::kInfo:
            return "info";
        case LogLevel::kWarn:
            return "warn";
        case LogLevel::kError:
            return "error";
    }
    return "info";
}

std::string_view to_string(LogFormat format) {
    return format == LogFormat::kJson ? "json" : "text";
}

std::string_view to_string(ConfigSource source) {
    switch (source) {
        case ConfigSource::kDefault:
            return "default";
        case ConfigSource::kEnvironment:
            return "environment";
        case ConfigSource::kFlag:
            return "flag";
    }
    return "default";
}

int ServerConfig::effective_rate_limit_burst() const {
    return rate_limit_burst > 0 ? rate_limit_burst : std::max(1, rate_limit_rpm / 6);
}

engine::ExplicitSettings explicit_generation_settings(const ServerConfig& config) {
    const auto is_explicit = [&](std::string_view name) {
        const auto it = config.sources.find(name);
        return it != config.sources.end() && it->second != ConfigSource::kDefault;
    };
    engine::ExplicitSettings settings;
    if (is_explicit("MAX_LENGTH")) settings.max_new_tokens = config.max_length;
    if (is_explicit("TEMPERATURE")) settings.temperature = config.temperature;
    if (is_explicit("TOP_P")) settings.top_p = config.top_p;
    return settings;
}

std::optional<std::string> ServerConfig::cors_allowed_origin(std::string_view origin) const {
    if (origin.empty() || cors_allow_origins.empty()) return std::nullopt;
    if (cors_allow_origins.front() == "*") return std::string("*");
    const std::string wanted = lowercase(origin);
    if (std::find(cors_allow_origins.begin(), cors_allow_origins.end(), wanted) ==
        cors_allow_origins.end()) {
        return std::nullopt;
    }
    return std::string(origin);
}

std::size_t auto_kv_cache_bytes(std::size_t one_context_bytes, std::size_t all_sequences_bytes,
                                std::optional<std::uint64_t> available) {
    constexpr std::size_t kEngineDefaultCap = std::size_t{1} << 30;  // the engine's own cap
    std::size_t budget = std::min(all_sequences_bytes, kEngineDefaultCap);
    if (available)
        budget = static_cast<std::size_t>(std::min<std::uint64_t>(budget, *available / 4));
    return std::max(budget, one_context_bytes);
}

const std::vector<SettingInfo>& setting_infos() {
    static const std::vector<SettingInfo> infos = [] {
        std::vector<SettingInfo> out;
        for (const Setting& setting : settings()) out.push_back(setting.info);
        return out;
    }();
    return infos;
}

EnvironmentLookup process_environment() {
    return [](std::string_view name) -> std::optional<std::string> {
        const char* value = std::getenv(std::string(name).c_str());
        if (value == nullptr) return std::nullopt;
        return std::string(value);
    };
}

ServerConfig resolve_config(const EnvironmentLookup& environment,
                            const std::map<std::string, std::string, std::less<>>& flags,
                            ServerConfig defaults, const SettingNames& only) {
    ServerConfig config = std::move(defaults);
    for (const auto& flag : flags) {
        const bool known = std::any_of(settings().begin(), settings().end(), [&](const Setting& s) {
            return s.info.env == flag.first && selected(s, only);
        });
        if (!known) fail(ErrorCode::kInternal, "no setting named {} takes a flag", flag.first);
    }
    for (const Setting& setting : settings()) {
        if (!selected(setting, only)) continue;
        const std::string name(setting.info.env);
        config.sources[name] = ConfigSource::kDefault;
        if (const auto value = environment(name); value && !value->empty()) {
            if (auto failure = setting.apply(config, *value)) {
                fail_param(name, "{}='{}' is invalid: expected {}", name, *value, *failure);
            }
            config.sources[name] = ConfigSource::kEnvironment;
        }
        if (const auto flag = flags.find(name); flag != flags.end()) {
            if (auto failure = setting.apply(config, flag->second)) {
                fail_param(name, "{}='{}' ({}) is invalid: expected {}", setting.info.flag,
                           flag->second, name, *failure);
            }
            config.sources[name] = ConfigSource::kFlag;
        }
    }
    return config;
}

std::string describe_config(const ServerConfig& config, const SettingNames& only) {
    std::string out;
    for (const Setting& setting : settings()) {
        if (!selected(setting, only)) continue;
        const std::string name(setting.info.env);
        const auto source = config.sources.find(name);
        const std::string assignment = fmt::format("{}={}", name, setting.show(config));
        out += fmt::format(
            "{:<40} ({})\n", assignment,
            to_string(source == config.sources.end() ? ConfigSource::kDefault : source->second));
    }
    return out;
}

}  // namespace llmserve::server
