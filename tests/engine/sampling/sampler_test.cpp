// The seeded sampler: draws follow the processed distribution (chi-square goodness of fit), the
// same seed replays the same draws, different seeds differ.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "common/error.h"
#include "engine/sampling/logits_processor.h"
#include "engine/sampling/sampler.h"
#include "test_support.h"

namespace llmserve::engine {
namespace {

// Significance level of every goodness-of-fit test: p = 0.001. The seeds are fixed, so a test
// either always passes or always fails; the level says how unlikely a pass-to-fail flip would be
// if the seeds were changed while the code is correct.
constexpr double kZ999 = 3.090232306167813;  // standard normal quantile at 1 - 0.001
constexpr int kDraws = 40000;
constexpr double kMinExpectedPerBin = 5.0;  // smaller bins are pooled

// Chi-square critical value at p = 0.001 by the Wilson-Hilferty approximation (accurate to
// ~1% for the degrees of freedom used here).
double chi_square_critical(int degrees_of_freedom) {
    const double k = degrees_of_freedom;
    const double term = 1.0 - 2.0 / (9.0 * k) + kZ999 * std::sqrt(2.0 / (9.0 * k));
    return k * term * term * term;
}

struct FitResult {
    double statistic;
    double critical;
    int draws_on_removed_tokens;
};

// Chi-square of `counts` against `probs` (tokens with p = 0 must never be drawn), pooling every
// token whose expected count is below kMinExpectedPerBin into one bin.
FitResult fit(const std::vector<int>& counts, const std::vector<double>& probs, int draws) {
    FitResult result{0.0, 0.0, 0};
    double pooled_expected = 0.0;
    double pooled_observed = 0.0;
    int bins = 0;
    for (std::size_t i = 0; i < probs.size(); ++i) {
        if (probs[i] == 0.0) {
            result.draws_on_removed_tokens += counts[i];
            continue;
        }
        const double expected = probs[i] * draws;
        if (expected < kMinExpectedPerBin) {
            pooled_expected += expected;
            pooled_observed += counts[i];
            continue;
        }
        result.statistic += (counts[i] - expected) * (counts[i] - expected) / expected;
        ++bins;
    }
    if (pooled_expected > 0.0) {
        result.statistic += (pooled_observed - pooled_expected) *
                            (pooled_observed - pooled_expected) / pooled_expected;
        ++bins;
    }
    result.critical = chi_square_critical(std::max(bins - 1, 1));
    return result;
}

std::vector<int> draw_counts(const std::vector<float>& row, std::uint64_t seed, int draws) {
    Sampler sampler(seed);
    std::vector<int> counts(row.size(), 0);
    for (int i = 0; i < draws; ++i) ++counts[static_cast<std::size_t>(sampler.sample(row, false))];
    return counts;
}

struct Case {
    const char* name;
    SamplingParams params;
};

std::vector<Case> parameter_sets() {
    std::vector<Case> cases;
    cases.push_back({"plain", {}});
    SamplingParams p;
    p.temperature = 0.7f;
    p.top_p = 0.9f;
    cases.push_back({"temperature 0.7, top_p 0.9", p});
    p = {};
    p.temperature = 1.5f;
    p.top_k = 12;
    cases.push_back({"temperature 1.5, top_k 12", p});
    p = {};
    p.min_p = 0.05f;
    p.repetition_penalty = 1.3f;
    cases.push_back({"min_p 0.05, repetition_penalty 1.3", p});
    p = {};
    p.typical_p = 0.7f;
    p.presence_penalty = 1.0f;
    cases.push_back({"typical_p 0.7, presence_penalty 1", p});
    return cases;
}

TEST(Sampler, DrawFrequenciesMatchProcessedDistribution) {
    const std::vector<float> logits = testing::random_logits(300, 5, 1.5);
    SequenceTokens history(std::vector<TokenId>{3, 17, 42});
    history.append(42);
    std::uint64_t seed = 1000;
    for (const Case& c : parameter_sets()) {
        std::vector<float> row = logits;
        process_logits(c.params, {}, {}, history, row);
        const std::vector<double> probs = testing::softmax(row);
        const FitResult result = fit(draw_counts(row, ++seed, kDraws), probs, kDraws);
        EXPECT_EQ(result.draws_on_removed_tokens, 0) << c.name;
        EXPECT_LT(result.statistic, result.critical) << c.name;
    }
}

TEST(Sampler, GoodnessOfFitTestHasPower) {
    // The same test must reject draws from the top_p-filtered row when compared with the
    // unfiltered distribution: otherwise passing above would mean nothing.
    const std::vector<float> logits = testing::random_logits(300, 5, 1.5);
    std::vector<float> row = logits;
    SamplingParams params;
    params.top_p = 0.9f;
    process_logits(params, {}, {}, SequenceTokens({}), row);
    const FitResult result = fit(draw_counts(row, 77, kDraws), testing::softmax(logits), kDraws);
    EXPECT_GT(result.statistic, result.critical);
}

TEST(Sampler, SameSeedSameDrawsDifferentSeedsDiffer) {
    const std::vector<float> row = testing::random_logits(1000, 9, 1.0);
    const auto draws = [&](std::uint64_t seed) {
        Sampler sampler(seed);
        std::vector<TokenId> tokens;
        for (int i = 0; i < 200; ++i) tokens.push_back(sampler.sample(row, false));
        return tokens;
    };
    EXPECT_EQ(draws(42), draws(42));
    EXPECT_NE(draws(42), draws(43));
    EXPECT_NE(draws(0), draws(1));
    EXPECT_NE(draws(derive_seed(42, 1)), draws(derive_seed(42, 2)));
    EXPECT_EQ(derive_seed(42, 0), 42u);
}

TEST(Rng, UnitDrawsAreUniform) {
    Rng rng(2024);
    constexpr int kBins = 64;
    constexpr int kCount = 64000;
    std::vector<int> counts(kBins, 0);
    for (int i = 0; i < kCount; ++i) {
        const double u = rng.next_unit();
        ASSERT_GE(u, 0.0);
        ASSERT_LT(u, 1.0);
        ++counts[static_cast<std::size_t>(u * kBins)];
    }
    const FitResult result = fit(counts, std::vector<double>(kBins, 1.0 / kBins), kCount);
    EXPECT_LT(result.statistic, result.critical);
}

TEST(Sampler, NeverDrawsRemovedTokensAndRejectsEmptyRows) {
    const float removed = -std::numeric_limits<float>::infinity();
    std::vector<float> row(1000, removed);
    row[0] = 0.0f;
    row[999] = 0.0f;
    row[500] = -30.0f;  // tiny but possible
    Sampler sampler(5);
    std::set<TokenId> seen;
    for (int i = 0; i < 2000; ++i) seen.insert(sampler.sample(row, false));
    EXPECT_TRUE(seen.count(0) && seen.count(999));
    for (TokenId token : seen) EXPECT_TRUE(token == 0 || token == 999 || token == 500);
    EXPECT_EQ(sampler.sample(row, true), 0);

    const std::vector<float> empty_row(10, removed);
    EXPECT_THROW(sampler.sample(empty_row, false), Error);
    EXPECT_THROW(sampler.sample(empty_row, true), Error);
}

}  // namespace
}  // namespace llmserve::engine
