// SHA-256 over a stream of bytes, through OpenSSL's libcrypto (Debian's libssl-dev): already a
// dependency of libcurl, constant-time-reviewed and several times faster than a portable
// implementation, which matters when checking multi-gigabyte weight files.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

namespace llmserve::hub {

class Sha256 {
  public:
    Sha256();  // kResourceExhausted/kInternal if OpenSSL cannot set up a digest
    void update(std::span<const std::byte> bytes);
    // Lower-case hex of the digest of everything updated so far; the object then starts over.
    std::string hex_digest();

  private:
    struct ContextDeleter {
        void operator()(void* context) const;
    };
    std::unique_ptr<void, ContextDeleter> context_;  // EVP_MD_CTX, kept out of this header
};

}  // namespace llmserve::hub
