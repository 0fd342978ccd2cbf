#include "server/auth.h"

#include <gtest/gtest.h>

namespace llmserve::server {
namespace {

TEST(AuthTest, ConstantTimeEqualsComparesWholeStrings) {
    EXPECT_TRUE(constant_time_equals("", ""));
    EXPECT_TRUE(constant_time_equals("secret", "secret"));
    EXPECT_FALSE(constant_time_equals("secret", "secreT"));
    EXPECT_FALSE(constant_time_equals("secret", "secret2"));
    EXPECT_FALSE(constant_time_equals("secret", "secre"));
    EXPECT_FALSE(constant_time_equals("", "x"));
    // A prefix padded with NUL must not match (the padding byte is 0).
    EXPECT_FALSE(constant_time_equals(std::string_view("ab\0", 3), "ab"));
}

TEST(AuthTest, AcceptsOnlyKnownBearerKeys) {
    const ApiKeyAuthenticator auth({"alpha-key", "beta-key"});
    EXPECT_TRUE(auth.enabled());
    EXPECT_EQ(auth.authenticate("Bearer alpha-key"), 0u);
    EXPECT_EQ(auth.authenticate("Bearer beta-key"), 1u);
    EXPECT_EQ(auth.authenticate("bearer   beta-key "), 1u);  // scheme is case-insensitive
    EXPECT_FALSE(auth.authenticate(""));
    EXPECT_FALSE(auth.authenticate("Bearer"));
    EXPECT_FALSE(auth.authenticate("Bearer "));
    EXPECT_FALSE(auth.authenticate("Bearer gamma-key"));
    EXPECT_FALSE(auth.authenticate("Bearer alpha-ke"));
    EXPECT_FALSE(auth.authenticate("Basic alpha-key"));
    EXPECT_FALSE(auth.authenticate("Beareralpha-key"));
    EXPECT_FALSE(auth.authenticate("alpha-key"));
}

TEST(AuthTest, NoKeysMeansDisabled) {
    const ApiKeyAuthenticator auth({});
    EXPECT_FALSE(auth.enabled());
    EXPECT_FALSE(auth.authenticate("Bearer anything"));
}

}  // namespace
}  // namespace llmserve::server
