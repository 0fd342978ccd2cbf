#include "server/logger.h"

#include <gtest/gtest.h>

#include <regex>
#include <sstream>

namespace llmserve::server {
namespace {

TEST(LoggerTest, TextLinesQuoteOnlyWhatNeedsIt) {
    std::ostringstream out;
    Logger logger(LogLevel::kInfo, LogFormat::kText, out);
    EXPECT_EQ(logger.format_line("T", LogLevel::kWarn, "request",
                                 {{"id", "abc"}, {"status", 200}, {"note", "two words"}}),
              "T WARN request id=abc status=200 note=\"two words\"");
}

TEST(LoggerTest, JsonLinesAreObjects) {
    std::ostringstream out;
    Logger logger(LogLevel::kDebug, LogFormat::kJson, out);
    logger.info("request", {{"route", "/generate"}, {"latency_ms", 12.5}});
    const auto line = nlohmann::json::parse(out.str());
    EXPECT_EQ(line["level"], "info");
    EXPECT_EQ(line["msg"], "request");
    EXPECT_EQ(line["route"], "/generate");
    EXPECT_DOUBLE_EQ(line["latency_ms"].get<double>(), 12.5);
    EXPECT_TRUE(std::regex_match(line["ts"].get<std::string>(),
                                 std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
}

TEST(LoggerTest, LevelFilter) {
    std::ostringstream out;
    Logger logger(LogLevel::kWarn, LogFormat::kText, out);
    logger.info("hidden");
    logger.debug("hidden");
    logger.error("shown");
    EXPECT_EQ(out.str().find("hidden"), std::string::npos);
    EXPECT_NE(out.str().find("ERROR shown"), std::string::npos);
}

}  // namespace
}  // namespace llmserve::server
