#include "server/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cctype>

namespace llmserve::server {

KeyDigest key_digest(std::string_view key) {
    KeyDigest digest{};
    SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest.data());
    return digest;
}

bool digests_equal(const KeyDigest& a, const KeyDigest& b) {
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

ApiKeyAuthenticator::ApiKeyAuthenticator(const std::vector<std::string>& keys) {
    key_digests_.reserve(keys.size());
    for (const std::string& key : keys) key_digests_.push_back(key_digest(key));
}

std::optional<std::size_t> ApiKeyAuthenticator::authenticate(
    std::string_view authorization_header) const {
    // RFC 6750: the scheme is case-insensitive, followed by one or more spaces.
    constexpr std::string_view kScheme = "bearer";
    if (authorization_header.size() <= kScheme.size()) return std::nullopt;
    for (std::size_t i = 0; i < kScheme.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(authorization_header[i])) != kScheme[i]) {
            return std::nullopt;
        }
    }
    std::string_view credential = authorization_header.substr(kScheme.size());
    if (credential.front() != ' ') return std::nullopt;
    while (!credential.empty() && credential.front() == ' ') credential.remove_prefix(1);
    while (!credential.empty() && credential.back() == ' ') credential.remove_suffix(1);

    const KeyDigest presented = key_digest(credential);
    std::optional<std::size_t> match;
    for (std::size_t i = 0; i < key_digests_.size(); ++i) {
        if (digests_equal(presented, key_digests_[i]) && !match) match = i;
    }
    return match;
}

}  // namespace llmserve::server
