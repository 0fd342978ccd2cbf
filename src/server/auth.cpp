#include "server/auth.h"

#include <algorithm>
#include <cctype>

namespace llmserve::server {

bool constant_time_equals(std::string_view a, std::string_view b) {
    const std::size_t length = std::max(a.size(), b.size());
    unsigned difference = a.size() == b.size() ? 0u : 1u;
    for (std::size_t i = 0; i < length; ++i) {
        const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
        const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
        difference |= static_cast<unsigned>(x ^ y);
    }
    return difference == 0;
}

ApiKeyAuthenticator::ApiKeyAuthenticator(std::vector<std::string> keys) : keys_(std::move(keys)) {}

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

    std::optional<std::size_t> match;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
        if (constant_time_equals(credential, keys_[i]) && !match) match = i;
    }
    return match;
}

}  // namespace llmserve::server
