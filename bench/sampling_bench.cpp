// Per-row cost of the generation controls on a GPT-2-sized (50257) row: process + sample, as the
// engine runs them once per sequence per decode step. Each iteration first copies the raw row
// into the working buffer (BM_CopyRowOnly measures that copy alone).
//
// Rows: "lm" imitates a language model's next-token distribution (Zipf-like: logit falls with
// log rank, plus noise, ranks shuffled over the vocabulary); "flat" is N(0, 1) noise, the worst
// case for top_p (no short head, most of the vocabulary is kept).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "engine/sampling/logits_processor.h"
#include "engine/sampling/logprobs.h"
#include "engine/sampling/sampler.h"

namespace llmserve::engine {
namespace {

constexpr std::size_t kVocab = 50257;

std::vector<float> lm_row() {
    std::mt19937 engine(1);
    std::vector<std::size_t> rank(kVocab);
    std::iota(rank.begin(), rank.end(), 0);
    std::shuffle(rank.begin(), rank.end(), engine);
    std::normal_distribution<float> noise(0.0f, 0.5f);
    std::vector<float> row(kVocab);
    for (std::size_t i = 0; i < kVocab; ++i) {
        row[i] = 10.0f - 1.1f * std::log(static_cast<float>(rank[i] + 1)) + noise(engine);
    }
    return row;
}

std::vector<float> flat_row() {
    std::mt19937 engine(2);
    std::normal_distribution<float> noise(0.0f, 1.0f);
    std::vector<float> row(kVocab);
    for (float& logit : row) logit = noise(engine);
    return row;
}

// A 512-token history (prompt 384 + 128 generated) over a 5000-token slice of the vocabulary.
SequenceTokens history(int no_repeat_ngram_size = 0) {
    std::mt19937 engine(3);
    std::vector<TokenId> prompt(384);
    for (TokenId& token : prompt) token = static_cast<TokenId>(engine() % 5000);
    SequenceTokens tokens(prompt, no_repeat_ngram_size);
    for (int i = 0; i < 128; ++i) tokens.append(static_cast<TokenId>(engine() % 5000));
    return tokens;
}

void run(benchmark::State& state, const std::vector<float>& raw, const SamplingParams& params,
         int no_repeat_ngram_size = 0) {
    const SequenceTokens tokens = history(no_repeat_ngram_size);
    const std::vector<TokenId> eos = {50256};
    LogitsProcessor processor;
    Sampler sampler(42);
    std::vector<float> row(raw.size());
    for (auto _ : state) {
        std::copy(raw.begin(), raw.end(), row.begin());
        processor.process(params, StopParams{}, eos, tokens, row);
        benchmark::DoNotOptimize(sampler.sample(row, is_greedy(params)));
    }
    state.counters["rows/s"] =
        benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

SamplingParams typical() {
    SamplingParams params;
    params.temperature = 0.7f;
    params.top_p = 0.9f;
    return params;
}

void BM_CopyRowOnly(benchmark::State& state) {
    const std::vector<float> raw = lm_row();
    std::vector<float> row(raw.size());
    for (auto _ : state) {
        std::copy(raw.begin(), raw.end(), row.begin());
        benchmark::DoNotOptimize(row.data());
    }
}
BENCHMARK(BM_CopyRowOnly);

void BM_Greedy(benchmark::State& state) {
    SamplingParams params;
    params.temperature = 0.0f;
    run(state, lm_row(), params);
}
BENCHMARK(BM_Greedy);

void BM_Temperature1NoFilters(benchmark::State& state) {
    run(state, lm_row(), SamplingParams{});
}
BENCHMARK(BM_Temperature1NoFilters);

void BM_Temp07TopP09(benchmark::State& state) {
    run(state, lm_row(), typical());
}
BENCHMARK(BM_Temp07TopP09);

void BM_Temp07TopP09TopK40(benchmark::State& state) {
    SamplingParams params = typical();
    params.top_k = 40;
    run(state, lm_row(), params);
}
BENCHMARK(BM_Temp07TopP09TopK40);

void BM_Temp07TopP09TopK40RepPenalty(benchmark::State& state) {
    SamplingParams params = typical();
    params.top_k = 40;
    params.repetition_penalty = 1.2f;
    run(state, lm_row(), params);
}
BENCHMARK(BM_Temp07TopP09TopK40RepPenalty);

void BM_AllPenaltiesAndNgram(benchmark::State& state) {
    SamplingParams params = typical();
    params.repetition_penalty = 1.2f;
    params.presence_penalty = 0.5f;
    params.frequency_penalty = 0.5f;
    params.no_repeat_ngram_size = 3;
    params.min_p = 0.05f;
    run(state, lm_row(), params, 3);
}
BENCHMARK(BM_AllPenaltiesAndNgram);

void BM_FlatRowTemp07TopP09(benchmark::State& state) {
    run(state, flat_row(), typical());
}
BENCHMARK(BM_FlatRowTemp07TopP09);

void BM_TypicalP09(benchmark::State& state) {
    SamplingParams params;
    params.typical_p = 0.9f;
    run(state, lm_row(), params);
}
BENCHMARK(BM_TypicalP09);

// What the partial selection in top_p avoids: sorting the whole row every step.
void BM_FullSortOfRowForComparison(benchmark::State& state) {
    const std::vector<float> raw = lm_row();
    std::vector<std::pair<float, TokenId>> pairs(raw.size());
    for (auto _ : state) {
        for (std::size_t i = 0; i < raw.size(); ++i) pairs[i] = {raw[i], static_cast<TokenId>(i)};
        std::sort(pairs.begin(), pairs.end(), std::greater<>());
        benchmark::DoNotOptimize(pairs.data());
    }
}
BENCHMARK(BM_FullSortOfRowForComparison);

void BM_StepLogprobsTop5(benchmark::State& state) {
    const std::vector<float> raw = lm_row();
    for (auto _ : state) benchmark::DoNotOptimize(step_logprobs(raw, 123, 5));
}
BENCHMARK(BM_StepLogprobsTop5);

}  // namespace
}  // namespace llmserve::engine
