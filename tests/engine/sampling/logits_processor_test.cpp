// Semantics of each control of the logits pipeline, against small hand-computed cases and
// against straightforward reference implementations written here from the definitions
// (transformers' processors, OpenAI's penalties).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "common/error.h"
#include "engine/sampling/logits_processor.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/vector_math.h"
#include "test_support.h"

namespace llmserve::engine {
namespace {

using testing::removed;
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> processed(std::vector<float> logits, const SamplingParams& params,
                             const SequenceTokens& history, const StopParams& stop = {},
                             std::vector<TokenId> eos_ids = {}) {
    process_logits(params, stop, eos_ids, history, logits);
    return logits;
}

std::set<TokenId> kept_set(const std::vector<float>& logits) {
    std::set<TokenId> kept;
    for (std::size_t i = 0; i < logits.size(); ++i) {
        if (!removed(logits[i])) kept.insert(static_cast<TokenId>(i));
    }
    return kept;
}

// --- references, written from the definitions ---------------------------------------------

// transformers TopPLogitsWarper: ascending sort, cumulative softmax, remove cum <= 1 - top_p,
// always keep the largest.
std::set<TokenId> reference_top_p(const std::vector<float>& logits, double top_p) {
    std::vector<TokenId> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](TokenId a, TokenId b) { return logits[a] < logits[b]; });
    const std::vector<double> probs = testing::softmax(logits);
    std::set<TokenId> kept;
    double cumulative = 0.0;
    for (std::size_t rank = 0; rank < order.size(); ++rank) {
        cumulative += probs[static_cast<std::size_t>(order[rank])];
        const bool is_last = rank + 1 == order.size();
        if (!(cumulative <= 1.0 - top_p) || is_last) kept.insert(order[rank]);
    }
    for (std::size_t i = 0; i < logits.size(); ++i) {
        if (removed(logits[i])) kept.erase(static_cast<TokenId>(i));
    }
    return kept;
}

// transformers TypicalLogitsWarper.
std::set<TokenId> reference_typical(const std::vector<float>& logits, double mass) {
    const std::vector<double> probs = testing::softmax(logits);
    double entropy = 0.0;
    for (double p : probs) {
        if (p > 0) entropy -= p * std::log(p);
    }
    std::vector<std::pair<double, TokenId>> scored;
    for (std::size_t i = 0; i < logits.size(); ++i) {
        if (probs[i] > 0) scored.emplace_back(std::abs(-std::log(probs[i]) - entropy), i);
    }
    std::sort(scored.begin(), scored.end());
    std::size_t last = 0;
    double cumulative = 0.0;
    for (const auto& [score, token] : scored) {
        cumulative += probs[static_cast<std::size_t>(token)];
        if (cumulative < mass) ++last;
    }
    last = std::min(last, scored.size() - 1);
    std::set<TokenId> kept;
    for (std::size_t i = 0; i < scored.size(); ++i) {
        if (i == 0 || scored[i].first <= scored[last].first) kept.insert(scored[i].second);
    }
    return kept;
}

// transformers NoRepeatNGramLogitsProcessor: every earlier n-gram whose first n-1 tokens equal
// the last n-1 tokens bans its last token.
std::set<TokenId> reference_ngram_bans(const std::vector<TokenId>& tokens, std::size_t n) {
    std::set<TokenId> banned;
    if (tokens.size() < n) return banned;
    for (std::size_t start = 0; start + n <= tokens.size(); ++start) {
        if (std::equal(tokens.begin() + static_cast<std::ptrdiff_t>(start),
                       tokens.begin() + static_cast<std::ptrdiff_t>(start + n - 1),
                       tokens.end() - static_cast<std::ptrdiff_t>(n - 1))) {
            banned.insert(tokens[start + n - 1]);
        }
    }
    return banned;
}

// --- penalties, bias, bans -------------------------------------------------------------------

TEST(LogitBias, AddsBiasToListedTokens) {
    const std::vector<float> logits = {1.0f, 2.0f, 3.0f, -1.0f};
    SamplingParams params;
    params.logit_bias = {{0, 5.0f}, {2, -1.5f}};
    const auto out = processed(logits, params, SequenceTokens({}));
    EXPECT_FLOAT_EQ(out[0], logits[0] + 5.0f);
    EXPECT_FLOAT_EQ(out[1], logits[1]);
    EXPECT_FLOAT_EQ(out[2], logits[2] - 1.5f);
    EXPECT_FLOAT_EQ(out[3], logits[3]);
}

TEST(RepetitionPenalty, DividesPositiveAndMultipliesNegativeOncePerDistinctToken) {
    const std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.5f};
    SamplingParams params;
    params.repetition_penalty = 2.0f;
    // Token 1 appears twice in the prompt and once generated: still penalised once.
    SequenceTokens history(std::vector<TokenId>{0, 1, 1});
    history.append(1);
    const auto out = processed(logits, params, history);
    EXPECT_FLOAT_EQ(out[0], 2.0f / 2.0f);
    EXPECT_FLOAT_EQ(out[1], -2.0f * 2.0f);
    EXPECT_FLOAT_EQ(out[2], 1.0f);
    EXPECT_FLOAT_EQ(out[3], 0.5f);
}

TEST(PresenceFrequencyPenalty, OpenAiFormulaOverGeneratedTokensOnly) {
    const std::vector<float> logits = {1.0f, 1.0f, 1.0f, 1.0f};
    SamplingParams params;
    params.presence_penalty = 0.5f;
    params.frequency_penalty = 0.25f;
    SequenceTokens history(std::vector<TokenId>{3, 3});  // prompt: not counted
    for (TokenId token : {0, 0, 0, 1}) history.append(token);
    const auto out = processed(logits, params, history);
    EXPECT_FLOAT_EQ(out[0], 1.0f - (3 * 0.25f + 0.5f));
    EXPECT_FLOAT_EQ(out[1], 1.0f - (1 * 0.25f + 0.5f));
    EXPECT_FLOAT_EQ(out[2], 1.0f);
    EXPECT_FLOAT_EQ(out[3], 1.0f);
}

TEST(NoRepeatNgram, HandCases) {
    const std::vector<float> logits(10, 0.0f);
    SamplingParams params;
    params.no_repeat_ngram_size = 2;
    // "5 6" occurred and the sequence ends in 5: 6 would repeat the bigram.
    EXPECT_EQ(kept_set(processed(logits, params, SequenceTokens({{5, 6, 7, 5}}, 2))).count(6), 0u);
    params.no_repeat_ngram_size = 3;
    auto out = processed(logits, params, SequenceTokens({{1, 2, 3, 1, 2}}, 3));
    EXPECT_TRUE(removed(out[3]));
    EXPECT_EQ(kept_set(out).size(), 9u);
    // Fewer tokens than n: nothing to ban.
    out = processed(logits, params, SequenceTokens({{1, 2}}, 3));
    EXPECT_EQ(kept_set(out).size(), 10u);
    // n = 1 bans every token seen.
    params.no_repeat_ngram_size = 1;
    out = processed(logits, params, SequenceTokens({{4, 4, 8}}, 1));
    EXPECT_EQ(kept_set(out), (std::set<TokenId>{0, 1, 2, 3, 5, 6, 7, 9}));
}

TEST(NoRepeatNgram, IncrementalHistoryMatchesReferenceOnRandomSequences) {
    std::mt19937 engine(7);
    for (int n = 1; n <= 4; ++n) {
        for (int trial = 0; trial < 20; ++trial) {
            const std::size_t vocab = 2 + engine() % 5;  // small vocab: many repeats
            std::vector<TokenId> tokens(engine() % 12);
            for (TokenId& token : tokens) token = static_cast<TokenId>(engine() % vocab);
            SequenceTokens history(tokens, n);
            SamplingParams params;
            params.no_repeat_ngram_size = n;
            for (int step = 0; step < 15; ++step) {
                std::set<TokenId> expected_kept;
                const std::set<TokenId> banned = reference_ngram_bans(tokens, n);
                for (TokenId t = 0; t < static_cast<TokenId>(vocab); ++t) {
                    if (!banned.count(t)) expected_kept.insert(t);
                }
                std::vector<float> logits(vocab, 0.0f);
                if (expected_kept.empty()) {
                    EXPECT_THROW(process_logits(params, {}, {}, history, logits), Error);
                } else {
                    process_logits(params, {}, {}, history, logits);
                    ASSERT_EQ(kept_set(logits), expected_kept) << "n=" << n << " step " << step;
                }
                const auto next = static_cast<TokenId>(engine() % vocab);
                tokens.push_back(next);
                history.append(next);
            }
        }
    }
}

TEST(BadWords, SingleAlwaysMultiWhenPrefixMatchesEosOnlyIgnored) {
    const std::vector<float> logits(10, 0.0f);
    SamplingParams params;
    params.bad_words_ids = {{4}, {1, 2, 3}, {9}, {7, 8, 1, 2, 5}};
    const std::vector<TokenId> eos = {9};
    // Ends with "1 2": 3 completes a bad sequence. 4 always banned. [9] is EOS alone: ignored.
    // The 5-token sequence is longer than the 4-token history: skipped.
    auto out = processed(logits, params, SequenceTokens({{0, 0, 1, 2}}), {}, eos);
    EXPECT_EQ(kept_set(out), (std::set<TokenId>{0, 1, 2, 5, 6, 7, 8, 9}));
    // Ends with "2 1": no prefix matches.
    out = processed(logits, params, SequenceTokens({{0, 0, 2, 1}}), {}, eos);
    EXPECT_EQ(kept_set(out), (std::set<TokenId>{0, 1, 2, 3, 5, 6, 7, 8, 9}));
    // Long sequence whose prefix matches bans its last token.
    out = processed(logits, params, SequenceTokens({{0, 7, 8, 1, 2}}), {}, eos);
    EXPECT_EQ(kept_set(out), (std::set<TokenId>{0, 1, 2, 6, 7, 8, 9}));
    // One-token bans apply even before any history exists.
    out = processed(logits, params, SequenceTokens({}), {}, eos);
    EXPECT_TRUE(removed(out[4]));
    // Without EOS ids, [9] is an ordinary bad word.
    out = processed(logits, params, SequenceTokens({{0}}));
    EXPECT_TRUE(removed(out[9]));
}

TEST(MinNewTokens, SuppressesEosAndStopTokensUntilReached) {
    const std::vector<float> logits(10, 0.0f);
    StopParams stop;
    stop.min_new_tokens = 2;
    stop.stop_token_ids = {7};
    const std::vector<TokenId> eos = {9};
    SequenceTokens history(std::vector<TokenId>{1, 2, 3});
    history.append(4);  // one generated: still below 2
    auto out = processed(logits, SamplingParams{}, history, stop, eos);
    EXPECT_EQ(kept_set(out), (std::set<TokenId>{0, 1, 2, 3, 4, 5, 6, 8}));
    // ignore_eos: EOS is an ordinary token, stop tokens still suppressed.
    stop.ignore_eos = true;
    out = processed(logits, SamplingParams{}, history, stop, eos);
    EXPECT_EQ(kept_set(out), (std::set<TokenId>{0, 1, 2, 3, 4, 5, 6, 8, 9}));
    stop.ignore_eos = false;
    history.append(5);  // two generated: nothing suppressed
    out = processed(logits, SamplingParams{}, history, stop, eos);
    EXPECT_EQ(kept_set(out).size(), 10u);
}

TEST(Pipeline, BiasBeforeRepetitionPenaltyBeforeTemperature) {
    // bias first: (-1 + 2) / 2 = 0.5, then / temperature 0.5 = 1. (Penalty first would give
    // (-2 + 2) / 0.5 = 0.)
    SamplingParams params;
    params.logit_bias = {{0, 2.0f}};
    params.repetition_penalty = 2.0f;
    params.temperature = 0.5f;
    const auto out = processed({-1.0f, 0.0f}, params, SequenceTokens({{0}}));
    EXPECT_FLOAT_EQ(out[0], 1.0f);
    EXPECT_FLOAT_EQ(out[1], 0.0f);
}

TEST(Pipeline, EveryTokenRemovedIsAnError) {
    SamplingParams params;
    params.bad_words_ids = {{0}, {1}};
    std::vector<float> logits = {1.0f, 2.0f};
    EXPECT_THROW(process_logits(params, {}, {}, SequenceTokens({}), logits), Error);
}

TEST(Pipeline, OutOfRangeIdsAreErrorsNotCrashes) {
    std::vector<float> logits(4, 0.0f);
    SamplingParams params;
    params.repetition_penalty = 1.5f;
    EXPECT_THROW(process_logits(params, {}, {}, SequenceTokens({{7}}), logits), Error);
    params = {};
    params.logit_bias = {{-1, 1.0f}};
    EXPECT_THROW(process_logits(params, {}, {}, SequenceTokens({}), logits), Error);
    StopParams stop;
    stop.min_new_tokens = 1;
    const std::vector<TokenId> eos = {4};
    EXPECT_THROW(process_logits({}, stop, eos, SequenceTokens({}), logits), Error);
    params = {};
    params.no_repeat_ngram_size = 2;  // history built without an n-gram table
    EXPECT_THROW(process_logits(params, {}, {}, SequenceTokens({}), logits), Error);
}

// --- sampling filters ------------------------------------------------------------------------

TEST(TopK, KeepsTiesWithKthLogit) {
    SamplingParams params;
    params.top_k = 2;
    const auto out = processed({1.0f, 3.0f, 3.0f, 2.0f, 3.0f}, params, SequenceTokens({}));
    EXPECT_EQ(kept_set(out), (std::set<TokenId>{1, 2, 4}));
    params.top_k = 4;
    EXPECT_EQ(kept_set(processed({1.0f, 3.0f, 3.0f, 2.0f, 3.0f}, params, SequenceTokens({}))),
              (std::set<TokenId>{1, 2, 3, 4}));
}

TEST(TopK, MatchesFullSortOnRandomRows) {
    for (std::uint32_t seed = 0; seed < 10; ++seed) {
        const std::vector<float> logits = testing::random_logits(5000, seed, 2.0);
        SamplingParams params;
        params.top_k = 1 + static_cast<int>(seed * 37);
        std::vector<float> sorted = logits;
        std::sort(sorted.begin(), sorted.end(), std::greater<>());
        const float kth = sorted[static_cast<std::size_t>(params.top_k - 1)];
        std::set<TokenId> expected;
        for (std::size_t i = 0; i < logits.size(); ++i) {
            if (logits[i] >= kth) expected.insert(static_cast<TokenId>(i));
        }
        EXPECT_EQ(kept_set(processed(logits, params, SequenceTokens({}))), expected);
    }
}

TEST(TopP, MatchesReferenceOnRandomRowsOfManyShapes) {
    // Scales from flat (the window fallback) to peaked, and kept sets from 1 to thousands of
    // tokens (several ordering chunks).
    for (const double scale : {0.3, 1.0, 3.0, 8.0}) {
        for (const float top_p : {0.05f, 0.5f, 0.9f, 0.99f}) {
            for (std::uint32_t seed = 0; seed < 3; ++seed) {
                const std::vector<float> logits = testing::random_logits(20000, seed, scale);
                SamplingParams params;
                params.top_p = top_p;
                EXPECT_EQ(kept_set(processed(logits, params, SequenceTokens({}))),
                          reference_top_p(logits, top_p))
                    << "scale " << scale << " top_p " << top_p << " seed " << seed;
            }
        }
    }
}

TEST(TopP, AlwaysKeepsTheMostLikelyToken) {
    SamplingParams params;
    params.top_p = 1e-6f;
    EXPECT_EQ(kept_set(processed({0.0f, 5.0f, 4.9f}, params, SequenceTokens({}))),
              (std::set<TokenId>{1}));
}

TEST(MinP, RemovesTokensBelowMinPTimesTopProbability) {
    // Probabilities 0.5, 0.3, 0.15, 0.05 (as log-probabilities); min_p 0.2 => threshold 0.1.
    const std::vector<double> probs = {0.5, 0.3, 0.15, 0.05};
    std::vector<float> logits;
    for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
    for (const float min_p : {0.2f, 0.5f, 0.9f, 1.0f}) {
        SamplingParams params;
        params.min_p = min_p;
        std::set<TokenId> expected;
        for (std::size_t i = 0; i < probs.size(); ++i) {
            if (!(probs[i] < min_p * probs[0])) expected.insert(static_cast<TokenId>(i));
        }
        EXPECT_EQ(kept_set(processed(logits, params, SequenceTokens({}))), expected)
            << "min_p " << min_p;
    }
}

TEST(TypicalP, HandCaseFromDefinition) {
    // p = 0.4, 0.3, 0.2, 0.1: H = 1.2799 nats; |-log p - H| = 0.364, 0.076, 0.330, 1.023.
    // Ranked: 1 (0.3), 2 (0.2), 0 (0.4), 3 (0.1); cumulative 0.3, 0.5, 0.9, 1.0.
    const std::vector<double> probs = {0.4, 0.3, 0.2, 0.1};
    std::vector<float> logits;
    for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
    SamplingParams params;
    params.typical_p = 0.45f;  // 0.3 < 0.45 <= 0.5: tokens 1 and 2
    EXPECT_EQ(kept_set(processed(logits, params, SequenceTokens({}))), (std::set<TokenId>{1, 2}));
    params.typical_p = 0.2f;  // the first ranked token alone
    EXPECT_EQ(kept_set(processed(logits, params, SequenceTokens({}))), (std::set<TokenId>{1}));
    params.typical_p = 0.85f;
    EXPECT_EQ(kept_set(processed(logits, params, SequenceTokens({}))),
              (std::set<TokenId>{0, 1, 2}));
}

TEST(TypicalP, MatchesReferenceOnRandomRows) {
    for (const double scale : {0.5, 2.0, 5.0}) {
        for (const float mass : {0.2f, 0.6f, 0.95f}) {
            const std::vector<float> logits = testing::random_logits(3000, 11, scale);
            SamplingParams params;
            params.typical_p = mass;
            EXPECT_EQ(kept_set(processed(logits, params, SequenceTokens({}))),
                      reference_typical(logits, mass))
                << "scale " << scale << " typical_p " << mass;
        }
    }
}

TEST(Greedy, TemperatureZeroIgnoresFiltersAndPicksLowestIdAmongTies) {
    SamplingParams params;
    params.temperature = 0.0f;
    params.top_p = 0.1f;
    params.top_k = 1;
    params.min_p = 0.9f;
    const std::vector<float> logits = {1.0f, 5.0f, 5.0f, 2.0f};
    const auto out = processed(logits, params, SequenceTokens({}));
    EXPECT_EQ(out, logits);  // the sampling filters never change the argmax: skipped
    Sampler sampler(123);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(sampler.sample(out, is_greedy(params)), 1);
}

TEST(Greedy, ArgmaxAfterBansAndPenalties) {
    SamplingParams params;
    params.temperature = 0.0f;
    params.bad_words_ids = {{1}};
    params.repetition_penalty = 10.0f;
    SequenceTokens history(std::vector<TokenId>{2});
    const auto out = processed({1.0f, 5.0f, 4.0f, 0.5f}, params, history);
    Sampler sampler(1);
    EXPECT_EQ(sampler.sample(out, true), 0);  // 1 banned, 2 penalised to 0.4
}

TEST(VectorMath, ExponentialIsAccurateAndUnderflowsToZero) {
    for (double x = -87.0; x <= 0.0; x += 0.001) {
        const auto xf = static_cast<float>(x);
        const double expected = std::exp(static_cast<double>(xf));
        ASSERT_NEAR(detail::exp_nonpositive(xf), expected, expected * 4e-7) << "x = " << xf;
    }
    EXPECT_EQ(detail::exp_nonpositive(-kInf), 0.0f);
    EXPECT_EQ(detail::exp_nonpositive(-100.0f), 0.0f);
    EXPECT_EQ(detail::exp_nonpositive(0.0f), 1.0f);
}

// The vector kernels (whichever instruction set this CPU dispatches to) must compute exactly the
// scalar definition written in vector_math.h: element j of a block into lane j % kLanes, lanes
// added in order. That is what makes draws identical across machines.
TEST(VectorMath, KernelsComputeExactlyTheScalarSpecification) {
    for (const std::size_t size : {1u, 255u, 256u, 257u, 5000u, 50257u}) {
        std::vector<float> row = testing::random_logits(size, 3, 4.0);
        if (size > 600) std::fill(row.begin() + 256, row.begin() + 512, -kInf);  // skipped block
        if (size > 1) row[size / 2] = -kInf;
        const float best = *std::max_element(row.begin(), row.end());
        ASSERT_EQ(detail::max_value(row), best);

        double expected_total = 0.0;
        std::vector<double> expected_blocks;
        std::vector<float> expected_exp(size);
        for (std::size_t begin = 0; begin < size; begin += detail::kBlock) {
            float lanes[detail::kLanes] = {};
            for (std::size_t j = 0; j < detail::kBlock; ++j) {
                const float value =
                    begin + j < size ? detail::exp_nonpositive(row[begin + j] - best) : 0.0f;
                if (begin + j < size) expected_exp[begin + j] = value;
                lanes[j % detail::kLanes] += value;
            }
            double block_sum = 0.0;
            for (float lane : lanes) block_sum += lane;
            expected_blocks.push_back(block_sum);
            expected_total += block_sum;
        }
        EXPECT_EQ(detail::sum_exp(row, best), expected_total) << "size " << size;
        std::vector<double> blocks(detail::block_count(size));
        detail::block_sums(row, best, blocks);
        EXPECT_EQ(blocks, expected_blocks) << "size " << size;
        std::vector<float> exps(size);
        EXPECT_EQ(detail::exp_row(row, best, exps), expected_total);
        EXPECT_EQ(exps, expected_exp) << "size " << size;

        // And the result is the sum of exponentials to float accuracy.
        double exact = 0.0;
        for (float x : row) exact += std::exp(static_cast<double>(x) - best);
        EXPECT_NEAR(expected_total, exact, exact * 1e-6);
    }
}

TEST(VectorMath, MassesDivideAndRemoveWhereBelow) {
    std::vector<float> values = testing::random_logits(1000, 8, 1.0);
    for (float& value : values) value = std::abs(value);
    const std::array<float, detail::kMassThresholds> thresholds = {2.0f, 1.0f, 0.5f, 0.0f};
    std::array<double, detail::kMassThresholds> masses;
    detail::masses_at_least(values, thresholds, masses);
    for (std::size_t k = 0; k < thresholds.size(); ++k) {
        double expected = 0.0;
        for (float value : values) expected += value >= thresholds[k] ? value : 0.0;
        EXPECT_NEAR(masses[k], expected, 1e-4) << "threshold " << thresholds[k];
    }
    std::vector<float> row = values;
    detail::divide(row, 0.7f);
    for (std::size_t i = 0; i < row.size(); ++i) ASSERT_EQ(row[i], values[i] / 0.7f);
    detail::remove_where_below(row, values, 1.0f);
    for (std::size_t i = 0; i < row.size(); ++i) {
        ASSERT_EQ(row[i], values[i] < 1.0f ? -kInf : values[i] / 0.7f);
    }
}

}  // namespace
}  // namespace llmserve::engine
