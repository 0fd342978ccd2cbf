#include "server/config.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "common/error.h"

namespace llmserve::server {
namespace {

using Flags = std::map<std::string, std::string, std::less<>>;

EnvironmentLookup fake_environment(std::map<std::string, std::string> variables) {
    return [variables = std::move(variables)](std::string_view name) -> std::optional<std::string> {
        const auto it = variables.find(std::string(name));
        if (it == variables.end()) return std::nullopt;
        return it->second;
    };
}

// The Error resolve_config throws for this environment and these flags.
Error resolve_error(std::map<std::string, std::string> environment, Flags flags = {}) {
    try {
        resolve_config(fake_environment(std::move(environment)), flags);
    } catch (const Error& error) {
        return error;
    }
    ADD_FAILURE() << "resolve_config accepted the configuration";
    return Error(ErrorCode::kInternal, "");
}

TEST(ConfigTest, DefaultsMatchTheSeedService) {
    const ServerConfig config = resolve_config(fake_environment({}), {});
    EXPECT_EQ(config.max_length, 100);
    EXPECT_DOUBLE_EQ(config.temperature, 0.7);
    EXPECT_DOUBLE_EQ(config.top_p, 0.9);
    EXPECT_EQ(config.port, 8000);
    EXPECT_DOUBLE_EQ(config.request_timeout_s, 30.0);
    EXPECT_TRUE(config.api_keys.empty());
    EXPECT_EQ(config.log_format, LogFormat::kText);
    EXPECT_EQ(config.device, "auto");
    for (const SettingInfo& info : setting_infos()) {
        ASSERT_TRUE(config.sources.contains(info.env)) << info.env;
        EXPECT_EQ(config.sources.at(std::string(info.env)), ConfigSource::kDefault) << info.env;
    }
}

TEST(ConfigTest, EnvironmentOverridesDefaultsAndFlagsOverrideEnvironment) {
    const ServerConfig config =
        resolve_config(fake_environment({{"PORT", "9000"},
                                         {"TEMPERATURE", "0.2"},
                                         {"LOG_FORMAT", "json"},
                                         {"API_KEYS", " key-one , key-two "},
                                         {"REQUEST_TIMEOUT_S", "1.5"},
                                         {"DEVICE", "cuda:1"}}),
                       Flags{{"PORT", "9100"}, {"MAX_QUEUE", "7"}});
    EXPECT_EQ(config.port, 9100);
    EXPECT_EQ(config.sources.at("PORT"), ConfigSource::kFlag);
    EXPECT_DOUBLE_EQ(config.temperature, 0.2);
    EXPECT_EQ(config.sources.at("TEMPERATURE"), ConfigSource::kEnvironment);
    EXPECT_EQ(config.log_format, LogFormat::kJson);
    EXPECT_EQ(config.api_keys, (std::vector<std::string>{"key-one", "key-two"}));
    EXPECT_DOUBLE_EQ(config.request_timeout_s, 1.5);
    EXPECT_EQ(config.device, "cuda:1");
    EXPECT_EQ(config.max_queue, 7);
    EXPECT_EQ(config.sources.at("MAX_QUEUE"), ConfigSource::kFlag);
    EXPECT_EQ(config.sources.at("TOP_P"), ConfigSource::kDefault);
}

TEST(ConfigTest, EmptyVariableCountsAsUnset) {
    const ServerConfig config = resolve_config(fake_environment({{"PORT", ""}}), {});
    EXPECT_EQ(config.port, 8000);
    EXPECT_EQ(config.sources.at("PORT"), ConfigSource::kDefault);
}

struct BadValue {
    std::string variable;
    std::string value;
    std::string allowed;  // a fragment the message must contain
};

TEST(ConfigTest, BadValuesNameTheVariableTheValueAndWhatIsAllowed) {
    const std::vector<BadValue> cases = {
        {"PORT", "abc", "[0, 65535]"},
        {"PORT", "65536", "[0, 65535]"},
        {"PORT", "80x", "[0, 65535]"},
        {"MAX_LENGTH", "0", "[1, 1000000]"},
        {"TEMPERATURE", "-0.5", "[0, 100]"},
        {"TEMPERATURE", "nan", "[0, 100]"},
        {"TOP_P", "0", "(0, 1]"},
        {"TOP_P", "1.01", "(0, 1]"},
        {"REQUEST_TIMEOUT_S", "0", "(0, 86400]"},
        {"MAX_CONCURRENT_REQUESTS", "0", "[1, 1024]"},
        {"MAX_QUEUE", "-1", "[1, 4096]"},
        {"MAX_QUEUE", "0", "[1, 4096]"},
        {"MAX_BODY_BYTES", "10", "[64, 1073741824]"},
        {"RATE_LIMIT_RPM", "fast", "[0, 1000000]"},
        {"DEVICE", "tpu", "auto, cpu, cuda, cuda:N"},
        {"DEVICE", "cuda:x", "auto, cpu, cuda, cuda:N"},
        {"LOG_LEVEL", "verbose", "debug, info, warn, error"},
        {"LOG_FORMAT", "xml", "text, json"},
        {"AUTH_EXEMPT_PROBES", "maybe", "true, false"},
        {"CUDA_GRAPHS", "sometimes", "true, false"},
        {"API_KEYS", "a,,b", "non-empty keys"},
        {"API_KEYS", "has space", "without spaces"},
        {"HOST", "bad host!", "IP address or host name"},
        {"CORS_ALLOW_ORIGINS", "app.example.com", "list of origins"},
        {"CORS_ALLOW_ORIGINS", "https://app.example.com/", "no path"},
        {"CORS_ALLOW_ORIGINS", "*,https://app.example.com", "* (any origin)"},
        {"CORS_ALLOW_ORIGINS", "https://a.example.com,,https://b.example.com", "list of origins"},
        {"THREADS", "2.5", "[0, 1024]"},
        {"CACHE_DIR", LLMSERVE_SOURCE_DIR "/CMakeLists.txt", "directory"},
        {"DTYPE", "q3", "auto, f32, f16, bf16, q8, q4"},
        {"DTYPE", "F16", "auto, f32, f16, bf16, q8, q4"},
        {"KV_CACHE_MB", "-1", "[0, 1048576]"},
        {"KV_CACHE_MB", "1048577", "[0, 1048576]"},
        {"KV_CACHE_MB", "64MB", "[0, 1048576]"},
        {"KV_CACHE_DTYPE", "bf16", "f32, f16"},
        {"MAX_BATCH_TOKENS", "15", "[16, 65536]"},
        {"MAX_BATCH_TOKENS", "65537", "[16, 65536]"},
        {"MAX_BATCH_TOKENS", "256.0", "[16, 65536]"},
    };
    for (const BadValue& bad : cases) {
        const Error error = resolve_error({{bad.variable, bad.value}});
        const std::string message = error.what();
        EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument) << message;
        EXPECT_EQ(error.param(), bad.variable) << message;
        EXPECT_NE(message.find(bad.variable), std::string::npos) << message;
        EXPECT_NE(message.find(bad.value), std::string::npos) << message;
        EXPECT_NE(message.find(bad.allowed), std::string::npos) << message;
    }
}

TEST(ConfigTest, BadFlagNamesTheFlag) {
    const Error error = resolve_error({}, Flags{{"PORT", "-3"}});
    EXPECT_EQ(error.param(), "PORT");
    EXPECT_NE(std::string(error.what()).find("--port"), std::string::npos) << error.what();
}

TEST(ConfigTest, EngineSettingsDefaultsEnvironmentAndFlags) {
    const ServerConfig defaults = resolve_config(fake_environment({}), {});
    EXPECT_EQ(defaults.dtype, backend::WeightFormat::kAuto);
    EXPECT_EQ(defaults.kv_cache_mb, 0);
    EXPECT_EQ(defaults.max_batch_tokens, 256);
    EXPECT_EQ(defaults.kv_cache_dtype, backend::KvFormat::kF32);
    EXPECT_TRUE(defaults.cuda_graphs);
    EXPECT_FALSE(resolve_config(fake_environment({{"CUDA_GRAPHS", "false"}}), {}).cuda_graphs);

    const ServerConfig from_environment =
        resolve_config(fake_environment({{"DTYPE", "q8"},
                                         {"KV_CACHE_MB", "64"},
                                         {"MAX_BATCH_TOKENS", "16"},
                                         {"KV_CACHE_DTYPE", "f16"}}),
                       {});
    EXPECT_EQ(from_environment.dtype, backend::WeightFormat::kQ8);
    EXPECT_EQ(from_environment.kv_cache_dtype, backend::KvFormat::kF16);
    EXPECT_EQ(from_environment.kv_cache_mb, 64);
    EXPECT_EQ(from_environment.max_batch_tokens, 16);
    for (const char* name : {"DTYPE", "KV_CACHE_MB", "MAX_BATCH_TOKENS", "KV_CACHE_DTYPE"}) {
        EXPECT_EQ(from_environment.sources.at(name), ConfigSource::kEnvironment) << name;
    }

    const ServerConfig from_flags = resolve_config(
        fake_environment({{"DTYPE", "q8"}, {"KV_CACHE_MB", "64"}, {"MAX_BATCH_TOKENS", "16"}}),
        Flags{{"DTYPE", "bf16"}, {"KV_CACHE_MB", "1048576"}, {"MAX_BATCH_TOKENS", "65536"}});
    EXPECT_EQ(from_flags.dtype, backend::WeightFormat::kBF16);
    EXPECT_EQ(from_flags.kv_cache_mb, 1048576);
    EXPECT_EQ(from_flags.max_batch_tokens, 65536);
    for (const char* name : {"DTYPE", "KV_CACHE_MB", "MAX_BATCH_TOKENS"}) {
        EXPECT_EQ(from_flags.sources.at(name), ConfigSource::kFlag) << name;
    }

    // Every weight format the backend knows by name is accepted, and shown as spelled.
    for (const char* name : {"auto", "f32", "f16", "bf16", "q8", "q4"}) {
        const ServerConfig config = resolve_config(fake_environment({}), Flags{{"DTYPE", name}});
        EXPECT_EQ(config.dtype, backend::parse_weight_format(name)) << name;
        EXPECT_NE(describe_config(config).find(std::string("DTYPE=") + name), std::string::npos)
            << name;
    }
}

TEST(ConfigTest, BadEngineSettingFlagsNameTheFlagAndVariable) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"DTYPE", "--dtype"},
        {"KV_CACHE_MB", "--kv-cache-mb"},
        {"KV_CACHE_DTYPE", "--kv-cache-dtype"},
        {"CUDA_GRAPHS", "--cuda-graphs"},
        {"MAX_BATCH_TOKENS", "--max-batch-tokens"}};
    for (const auto& [variable, flag] : cases) {
        const Error error = resolve_error({}, Flags{{variable, "nonsense"}});
        const std::string message = error.what();
        EXPECT_EQ(error.param(), variable) << message;
        EXPECT_NE(message.find(flag), std::string::npos) << message;
        EXPECT_NE(message.find(variable), std::string::npos) << message;
        EXPECT_NE(message.find("nonsense"), std::string::npos) << message;
    }
}

constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr std::size_t kGiB = std::size_t{1} << 30;

TEST(ConfigTest, AutoKvCacheWithoutAMemoryFigureIsTheEngineDefault) {
    // Every running sequence at full context...
    EXPECT_EQ(auto_kv_cache_bytes(4 * kMiB, 32 * 4 * kMiB, std::nullopt), 128 * kMiB);
    // ...at most 1 GiB...
    EXPECT_EQ(auto_kv_cache_bytes(72 * kMiB, 64 * 72 * kMiB, std::nullopt), kGiB);
    // ...but never less than one context, even when that is more than 1 GiB.
    EXPECT_EQ(auto_kv_cache_bytes(3 * kGiB / 2, 8 * 3 * kGiB / 2, std::nullopt), 3 * kGiB / 2);
}

TEST(ConfigTest, AutoKvCacheWithPlentyOfMemoryKeepsTheEngineDefault) {
    const std::uint64_t available = 64ull * kGiB;
    EXPECT_EQ(auto_kv_cache_bytes(4 * kMiB, 32 * 4 * kMiB, available), 128 * kMiB);
    EXPECT_EQ(auto_kv_cache_bytes(72 * kMiB, 64 * 72 * kMiB, available), kGiB);
    // Exactly four times the need: the quarter is the need itself.
    EXPECT_EQ(auto_kv_cache_bytes(4 * kMiB, 32 * 4 * kMiB, 4 * 128 * kMiB), 128 * kMiB);
}

TEST(ConfigTest, AutoKvCacheWithLittleMemoryTakesAQuarterButAtLeastOneContext) {
    // 200 MiB left: a quarter is 50 MiB, below the 128 MiB every sequence would want.
    EXPECT_EQ(auto_kv_cache_bytes(4 * kMiB, 32 * 4 * kMiB, 200 * kMiB), 50 * kMiB);
    // 1 GiB left with a 1 GiB want: a quarter, 256 MiB.
    EXPECT_EQ(auto_kv_cache_bytes(72 * kMiB, 64 * 72 * kMiB, kGiB), 256 * kMiB);
    // 8 MiB left: a quarter (2 MiB) is less than one context, so one context.
    EXPECT_EQ(auto_kv_cache_bytes(4 * kMiB, 32 * 4 * kMiB, 8 * kMiB), 4 * kMiB);
    // Nothing left at all: still one context (the engine accepts no less).
    EXPECT_EQ(auto_kv_cache_bytes(4 * kMiB, 32 * 4 * kMiB, 0), 4 * kMiB);
}

TEST(ConfigTest, DescribeShowsValueAndSourceButNeverKeys) {
    const ServerConfig config =
        resolve_config(fake_environment({{"API_KEYS", "secret-one,secret-two"}, {"PORT", "9001"}}),
                       Flags{{"LOG_LEVEL", "debug"}});
    const std::string text = describe_config(config);
    EXPECT_EQ(text.find("secret"), std::string::npos) << text;
    EXPECT_NE(text.find("API_KEYS=(2 keys, hidden)"), std::string::npos) << text;
    EXPECT_NE(text.find("PORT=9001"), std::string::npos) << text;
    EXPECT_NE(text.find("(environment)"), std::string::npos) << text;
    EXPECT_NE(text.find("LOG_LEVEL=debug"), std::string::npos) << text;
    EXPECT_NE(text.find("(flag)"), std::string::npos) << text;
    for (const SettingInfo& info : setting_infos()) {
        EXPECT_NE(text.find(std::string(info.env) + "="), std::string::npos) << info.env;
    }
}

TEST(ConfigTest, CorsAllowsTheListedOriginsOnly) {
    const ServerConfig none = resolve_config(fake_environment({}), {});
    EXPECT_FALSE(none.cors_allowed_origin("https://app.example.com"));
    const ServerConfig listed = resolve_config(
        fake_environment(
            {{"CORS_ALLOW_ORIGINS", "https://App.example.com, http://localhost:3000"}}),
        {});
    EXPECT_EQ(listed.cors_allowed_origin("https://app.example.com"), "https://app.example.com");
    EXPECT_EQ(listed.cors_allowed_origin("http://localhost:3000"), "http://localhost:3000");
    EXPECT_FALSE(listed.cors_allowed_origin("http://localhost:3001"));
    EXPECT_FALSE(listed.cors_allowed_origin("https://app.example.com.evil.net"));
    EXPECT_FALSE(listed.cors_allowed_origin(""));
    const ServerConfig any = resolve_config(fake_environment({{"CORS_ALLOW_ORIGINS", "*"}}), {});
    EXPECT_EQ(any.cors_allowed_origin("https://anywhere.example"), "*");
    EXPECT_FALSE(any.cors_allowed_origin(""));
}

TEST(ConfigTest, BurstDefaultsToAFractionOfTheRate) {
    ServerConfig config;
    config.rate_limit_rpm = 120;
    EXPECT_EQ(config.effective_rate_limit_burst(), 20);
    config.rate_limit_rpm = 3;
    EXPECT_EQ(config.effective_rate_limit_burst(), 1);
    config.rate_limit_burst = 5;
    EXPECT_EQ(config.effective_rate_limit_burst(), 5);
}

}  // namespace
}  // namespace llmserve::server
