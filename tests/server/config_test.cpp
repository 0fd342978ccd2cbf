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
        {"MAX_QUEUE", "-1", "[0, 4096]"},
        {"MAX_BODY_BYTES", "10", "[64, 1073741824]"},
        {"RATE_LIMIT_RPM", "fast", "[0, 1000000]"},
        {"DEVICE", "tpu", "auto, cpu, cuda, cuda:N"},
        {"DEVICE", "cuda:x", "auto, cpu, cuda, cuda:N"},
        {"LOG_LEVEL", "verbose", "debug, info, warn, error"},
        {"LOG_FORMAT", "xml", "text, json"},
        {"AUTH_EXEMPT_PROBES", "maybe", "true, false"},
        {"API_KEYS", "a,,b", "non-empty keys"},
        {"API_KEYS", "has space", "without spaces"},
        {"HOST", "bad host!", "IP address or host name"},
        {"THREADS", "2.5", "[0, 1024]"},
        {"CACHE_DIR", LLMSERVE_SOURCE_DIR "/CMakeLists.txt", "directory"},
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
