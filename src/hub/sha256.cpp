#include "hub/sha256.h"

#include "common/error.h"

#include <openssl/evp.h>

namespace llmserve::hub {
namespace {

EVP_MD_CTX* as_context(void* context) {
    return static_cast<EVP_MD_CTX*>(context);
}

void initialise(EVP_MD_CTX* context) {
    if (EVP_DigestInit_ex(context, EVP_sha256(), nullptr) != 1) {
        fail(ErrorCode::kInternal, "OpenSSL could not start a SHA-256 digest");
    }
}

}  // namespace

void Sha256::ContextDeleter::operator()(void* context) const {
    EVP_MD_CTX_free(as_context(context));
}

Sha256::Sha256() : context_(EVP_MD_CTX_new()) {
    if (!context_) fail(ErrorCode::kResourceExhausted, "OpenSSL could not allocate a digest");
    initialise(as_context(context_.get()));
}

void Sha256::update(std::span<const std::byte> bytes) {
    if (EVP_DigestUpdate(as_context(context_.get()), bytes.data(), bytes.size()) != 1) {
        fail(ErrorCode::kInternal, "OpenSSL failed to update a SHA-256 digest");
    }
}

std::string Sha256::hex_digest() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(as_context(context_.get()), digest, &length) != 1) {
        fail(ErrorCode::kInternal, "OpenSSL failed to finish a SHA-256 digest");
    }
    initialise(as_context(context_.get()));
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(2 * length);
    for (unsigned int i = 0; i < length; ++i) {
        hex += kHex[digest[i] >> 4];
        hex += kHex[digest[i] & 0xf];
    }
    return hex;
}

}  // namespace llmserve::hub
