// Bearer API-key authentication. Keys are compared in constant time (independent of where the
// first differing byte is and of which key matches), so response timing reveals nothing about
// a key beyond, at most, its length.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::server {

// True when a == b; the time taken depends only on the two lengths.
bool constant_time_equals(std::string_view a, std::string_view b);

class ApiKeyAuthenticator {
  public:
    explicit ApiKeyAuthenticator(std::vector<std::string> keys);

    bool enabled() const { return !keys_.empty(); }

    // The index of the key in `Authorization: Bearer <key>`, or nullopt when the header is
    // missing, not a bearer credential or not a known key. Every key is compared, always.
    std::optional<std::size_t> authenticate(std::string_view authorization_header) const;

  private:
    std::vector<std::string> keys_;
};

}  // namespace llmserve::server
