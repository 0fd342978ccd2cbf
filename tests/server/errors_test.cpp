#include "server/errors.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace llmserve::server {
namespace {

ApiError map(auto thrower) {
    try {
        thrower();
    } catch (...) {
        return api_error_from(std::current_exception());
    }
    ADD_FAILURE() << "nothing thrown";
    return {};
}

TEST(ErrorsTest, StatusForEachKindOfError) {
    EXPECT_EQ(map([] { fail_malformed("top_k", "bad type"); }).status, 400);
    EXPECT_EQ(map([] { fail_param("top_p", "out of range"); }).status, 422);
    EXPECT_EQ(map([] { throw ContextLengthExceeded("too long", "prompt"); }).code,
              "context_length_exceeded");
    EXPECT_EQ(map([] { fail(ErrorCode::kNotFound, "x"); }).status, 404);
    EXPECT_EQ(map([] { fail(ErrorCode::kUnsupported, "x"); }).status, 400);
    EXPECT_EQ(map([] { fail(ErrorCode::kPermissionDenied, "x"); }).status, 401);
    const ApiError full = map([] { fail(ErrorCode::kResourceExhausted, "queue full"); });
    EXPECT_EQ(full.status, 503);
    EXPECT_EQ(full.retry_after_s, 1);
    EXPECT_EQ(map([] { fail(ErrorCode::kInternal, "bug"); }).status, 500);
    EXPECT_EQ(map([] { throw std::runtime_error("boom"); }).status, 500);
    EXPECT_EQ(map([] { throw 42; }).status, 500);
}

TEST(ErrorsTest, BodyHasOpenAIShape) {
    const ApiError error = map([] { fail_param("top_p", "top_p must be in (0, 1], got 2"); });
    const auto body = nlohmann::json::parse(error.body());
    EXPECT_EQ(body["error"]["message"], "top_p must be in (0, 1], got 2");
    EXPECT_EQ(body["error"]["type"], "invalid_request_error");
    EXPECT_EQ(body["error"]["param"], "top_p");
    EXPECT_EQ(body["error"]["code"], "invalid_value");
    const auto no_param = nlohmann::json::parse(route_not_found("GET", "/nope").body());
    EXPECT_TRUE(no_param["error"]["param"].is_null());
    EXPECT_NE(no_param["error"]["message"].get<std::string>().find("/nope"), std::string::npos);
}

TEST(ErrorsTest, ServerRaisedErrors) {
    EXPECT_EQ(method_not_allowed("GET", "/generate", "POST").status, 405);
    EXPECT_EQ(payload_too_large(1024).status, 413);
    EXPECT_NE(payload_too_large(1024).message.find("1024"), std::string::npos);
    EXPECT_EQ(unauthorized(false).status, 401);
    const ApiError limited = rate_limited(7);
    EXPECT_EQ(limited.status, 429);
    EXPECT_EQ(limited.retry_after_s, 7);
    EXPECT_EQ(not_ready("loading", 2).status, 503);
}

}  // namespace
}  // namespace llmserve::server
