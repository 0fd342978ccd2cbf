#include "server/rate_limiter.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace llmserve::server {

RateLimiter::RateLimiter(double per_minute, double burst, Clock clock, std::size_t max_tracked_keys)
    : tokens_per_second_(per_minute / 60.0),
      burst_(burst),
      clock_(std::move(clock)),
      max_tracked_keys_(max_tracked_keys) {
    if (!(per_minute > 0) || !(burst >= 1)) {
        fail(ErrorCode::kInvalidArgument,
             "rate limiter needs a positive rate and a burst of at least 1, got {} per minute and "
             "burst {}",
             per_minute, burst);
    }
}

void RateLimiter::refill(Bucket& bucket, std::chrono::steady_clock::time_point now) const {
    const double elapsed_s = std::chrono::duration<double>(now - bucket.updated).count();
    if (elapsed_s > 0) {
        bucket.tokens = std::min(burst_, bucket.tokens + elapsed_s * tokens_per_second_);
        bucket.updated = now;
    }
}

void RateLimiter::drop_full_buckets(std::chrono::steady_clock::time_point now) {
    for (auto it = buckets_.begin(); it != buckets_.end();) {
        refill(it->second, now);
        it = it->second.tokens >= burst_ ? buckets_.erase(it) : std::next(it);
    }
}

RateLimiter::Decision RateLimiter::acquire(const std::string& key) {
    const auto now = clock_();
    std::lock_guard lock(mutex_);
    auto it = buckets_.find(key);
    if (it == buckets_.end()) {
        if (buckets_.size() >= max_tracked_keys_) drop_full_buckets(now);
        it = buckets_.emplace(key, Bucket{burst_, now}).first;
    }
    Bucket& bucket = it->second;
    refill(bucket, now);
    if (bucket.tokens >= 1.0) {
        bucket.tokens -= 1.0;
        return {};
    }
    const double wait_s = (1.0 - bucket.tokens) / tokens_per_second_;
    return Decision{false, std::max(1, static_cast<int>(std::ceil(wait_s)))};
}

std::size_t RateLimiter::tracked_keys() const {
    std::lock_guard lock(mutex_);
    return buckets_.size();
}

}  // namespace llmserve::server
