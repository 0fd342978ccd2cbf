// Bearer API-key authentication. Keys are kept and compared as SHA-256 digests with OpenSSL's
// CRYPTO_memcmp: the comparison always covers 32 bytes, whatever the keys' lengths or contents,
// so response timing reveals nothing about a key, not even its length.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::server {

using KeyDigest = std::array<unsigned char, 32>;

// SHA-256 of `key`.
KeyDigest key_digest(std::string_view key);

// True when a == b, in time that does not depend on where they differ.
bool digests_equal(const KeyDigest& a, const KeyDigest& b);

class ApiKeyAuthenticator {
  public:
    explicit ApiKeyAuthenticator(const std::vector<std::string>& keys);

    bool enabled() const { return !key_digests_.empty(); }

    // The index of the key in `Authorization: Bearer <key>`, or nullopt when the header is
    // missing, not a bearer credential or not a known key. Every key is compared, always.
    std::optional<std::size_t> authenticate(std::string_view authorization_header) const;

  private:
    std::vector<KeyDigest> key_digests_;  // the keys themselves are not kept
};

}  // namespace llmserve::server
