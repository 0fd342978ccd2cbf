// Logprobs: log-softmax of the raw row, top-N ordering and ties.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "common/error.h"
#include "engine/sampling/logprobs.h"
#include "test_support.h"

namespace llmserve::engine {
namespace {

TEST(Logprobs, TopNMatchesLogSoftmaxReference) {
    const std::vector<float> logits = testing::random_logits(50257, 21, 3.0);
    const std::vector<double> probs = testing::softmax(logits);
    std::vector<TokenId> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](TokenId a, TokenId b) { return logits[a] > logits[b]; });
    for (const int n : {0, 1, 5, 20}) {
        const std::vector<TokenLogprob> top = top_logprobs(logits, n);
        ASSERT_EQ(top.size(), static_cast<std::size_t>(n));
        for (int i = 0; i < n; ++i) {
            EXPECT_EQ(top[i].token, order[i]);
            EXPECT_NEAR(top[i].logprob, std::log(probs[static_cast<std::size_t>(order[i])]), 1e-4);
        }
    }
    for (const TokenId token : {0, 777, 50256}) {
        EXPECT_NEAR(token_logprob(logits, token), std::log(probs[static_cast<std::size_t>(token)]),
                    1e-4);
    }
    const StepLogprobs step = step_logprobs(logits, 777, 3);
    EXPECT_FLOAT_EQ(step.chosen.logprob, token_logprob(logits, 777));
    EXPECT_EQ(step.chosen.token, 777);
    ASSERT_EQ(step.top.size(), 3u);
    EXPECT_EQ(step.top[0].token, order[0]);
}

TEST(Logprobs, TiesRankLowerIdFirstAndProbabilitiesSumToOne) {
    const std::vector<float> logits = {1.0f, 2.0f, 2.0f, 0.0f, 2.0f};
    const std::vector<TokenLogprob> top = top_logprobs(logits, 5);
    ASSERT_EQ(top.size(), 5u);
    EXPECT_EQ(top[0].token, 1);
    EXPECT_EQ(top[1].token, 2);
    EXPECT_EQ(top[2].token, 4);
    EXPECT_EQ(top[3].token, 0);
    EXPECT_EQ(top[4].token, 3);
    double total = 0.0;
    for (const TokenLogprob& entry : top) total += std::exp(static_cast<double>(entry.logprob));
    EXPECT_NEAR(total, 1.0, 1e-6);
}

TEST(Logprobs, RejectsBadArguments) {
    const std::vector<float> logits = {0.0f, 1.0f};
    EXPECT_THROW(top_logprobs(logits, -1), Error);
    EXPECT_THROW(top_logprobs(logits, 3), Error);
    EXPECT_THROW(token_logprob(logits, 2), Error);
    EXPECT_THROW(step_logprobs(logits, -1, 1), Error);
}

}  // namespace
}  // namespace llmserve::engine
