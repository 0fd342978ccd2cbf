// Token-bucket rate limiting, one bucket per client key (an API key, or a client address when
// the server has no keys). A bucket holds up to `burst` tokens and refills at `per_minute / 60`
// tokens per second; each request takes one token or is refused with the time until one is back.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

namespace llmserve::server {

class RateLimiter {
  public:
    using Clock = std::function<std::chrono::steady_clock::time_point()>;

    struct Decision {
        bool allowed = true;
        // When refused: whole seconds until a token is available again (>= 1), for Retry-After.
        int retry_after_s = 0;
    };

    // per_minute > 0 and burst >= 1. At most `max_tracked_keys` buckets are kept: when more are
    // needed, buckets that have refilled completely (equivalent to new ones) are dropped.
    RateLimiter(double per_minute, double burst, Clock clock = std::chrono::steady_clock::now,
                std::size_t max_tracked_keys = 100'000);

    Decision acquire(const std::string& key);
    std::size_t tracked_keys() const;

  private:
    struct Bucket {
        double tokens;
        std::chrono::steady_clock::time_point updated;
    };
    void refill(Bucket& bucket, std::chrono::steady_clock::time_point now) const;
    void drop_full_buckets(std::chrono::steady_clock::time_point now);

    const double tokens_per_second_;
    const double burst_;
    const Clock clock_;
    const std::size_t max_tracked_keys_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace llmserve::server
