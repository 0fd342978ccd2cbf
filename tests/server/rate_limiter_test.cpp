#include "server/rate_limiter.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace llmserve::server {
namespace {

using namespace std::chrono_literals;

// A clock the test moves by hand.
struct ManualClock {
    std::chrono::steady_clock::time_point now{};
    RateLimiter::Clock function() {
        return [this] { return now; };
    }
};

TEST(RateLimiterTest, BurstThenRefillAtTheRate) {
    ManualClock clock;
    RateLimiter limiter(/*per_minute=*/60, /*burst=*/3, clock.function());
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.acquire("k").allowed) << i;
    const RateLimiter::Decision refused = limiter.acquire("k");
    EXPECT_FALSE(refused.allowed);
    EXPECT_EQ(refused.retry_after_s, 1);  // one token per second

    clock.now += 500ms;
    EXPECT_FALSE(limiter.acquire("k").allowed);
    clock.now += 500ms;
    EXPECT_TRUE(limiter.acquire("k").allowed);
    EXPECT_FALSE(limiter.acquire("k").allowed);

    clock.now += 1h;  // refills only up to the burst
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.acquire("k").allowed) << i;
    EXPECT_FALSE(limiter.acquire("k").allowed);
}

TEST(RateLimiterTest, RetryAfterIsTheWaitForOneToken) {
    ManualClock clock;
    RateLimiter limiter(/*per_minute=*/6, /*burst=*/1, clock.function());  // a token every 10 s
    EXPECT_TRUE(limiter.acquire("k").allowed);
    EXPECT_EQ(limiter.acquire("k").retry_after_s, 10);
    clock.now += 7s;
    EXPECT_EQ(limiter.acquire("k").retry_after_s, 3);
    clock.now += 2500ms;
    EXPECT_EQ(limiter.acquire("k").retry_after_s, 1);  // 0.5 s rounds up to 1
}

TEST(RateLimiterTest, KeysHaveSeparateBuckets) {
    ManualClock clock;
    RateLimiter limiter(60, 1, clock.function());
    EXPECT_TRUE(limiter.acquire("a").allowed);
    EXPECT_FALSE(limiter.acquire("a").allowed);
    EXPECT_TRUE(limiter.acquire("b").allowed);
}

TEST(RateLimiterTest, FullBucketsAreDroppedWhenTooManyKeys) {
    ManualClock clock;
    RateLimiter limiter(60, 2, clock.function(), /*max_tracked_keys=*/4);
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(limiter.acquire("key" + std::to_string(i)).allowed);
    EXPECT_EQ(limiter.tracked_keys(), 4u);
    clock.now += 10s;  // every bucket refills completely
    EXPECT_TRUE(limiter.acquire("new").allowed);
    EXPECT_EQ(limiter.tracked_keys(), 1u);
}

TEST(RateLimiterTest, EmptyBucketsAreKeptSoLimitsHold) {
    ManualClock clock;
    RateLimiter limiter(60, 1, clock.function(), /*max_tracked_keys=*/2);
    EXPECT_TRUE(limiter.acquire("a").allowed);
    EXPECT_TRUE(limiter.acquire("b").allowed);
    EXPECT_TRUE(limiter.acquire("c").allowed);  // nothing could be dropped
    EXPECT_FALSE(limiter.acquire("a").allowed);
}

TEST(RateLimiterTest, RejectsNonsenseSettings) {
    EXPECT_THROW(RateLimiter(0, 1), Error);
    EXPECT_THROW(RateLimiter(60, 0), Error);
}

}  // namespace
}  // namespace llmserve::server
