#include "server/auth.h"

#include <gtest/gtest.h>

#include <string>

namespace llmserve::server {
namespace {

std::string hex(const KeyDigest& digest) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string text;
    for (unsigned char byte : digest) {
        text += kDigits[byte >> 4];
        text += kDigits[byte & 15];
    }
    return text;
}

TEST(AuthTest, KeysAreComparedAsFixedSizeDigests) {
    // FIPS 180-2's test vector: the digest is SHA-256, not a truncation or a home-made hash.
    EXPECT_EQ(hex(key_digest("abc")),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_TRUE(digests_equal(key_digest("secret"), key_digest("secret")));
    EXPECT_FALSE(digests_equal(key_digest("secret"), key_digest("secreT")));
    EXPECT_FALSE(digests_equal(key_digest("secret"), key_digest("secret2")));
    EXPECT_FALSE(digests_equal(key_digest(""), key_digest("x")));
    // A prefix padded with NUL must not match.
    EXPECT_FALSE(digests_equal(key_digest(std::string_view("ab\0", 3)), key_digest("ab")));
}

TEST(AuthTest, NulInTheHeaderDoesNotTruncateTheKey) {
    const ApiKeyAuthenticator auth({"alpha-key"});
    EXPECT_FALSE(auth.authenticate(std::string_view("Bearer alpha-key\0junk", 22)));
    EXPECT_FALSE(auth.authenticate(std::string_view("Bearer alpha\0-key", 17)));
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
