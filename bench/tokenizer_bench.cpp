// Tokenizer throughput on held-out Brown corpus English (tests/data/brown-heldout.txt, ~260 KB).
// Bytes/s counts input text bytes for encode and output text bytes for decode.
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace {

using llmserve::tokenizer::StreamingDetokenizer;
using llmserve::tokenizer::TokenId;
using llmserve::tokenizer::Tokenizer;

const Tokenizer& gpt2_tokenizer() {
    static const Tokenizer tokenizer =
        Tokenizer::from_directory(LLMSERVE_SOURCE_DIR "/models/gpt2-brown-mini");
    return tokenizer;
}

const std::string& english_text() {
    static const std::string text = [] {
        std::ifstream stream(LLMSERVE_SOURCE_DIR "/tests/data/brown-heldout.txt", std::ios::binary);
        std::ostringstream content;
        content << stream.rdbuf();
        return std::move(content).str();
    }();
    return text;
}

// Steady state: after the first iteration every word is in the piece cache.
void BM_EncodeEnglish(benchmark::State& state) {
    const Tokenizer& tokenizer = gpt2_tokenizer();
    const std::string& text = english_text();
    if (text.empty()) state.SkipWithError("brown-heldout.txt is missing");
    std::size_t token_count = 0;
    for (auto _ : state) {
        const std::vector<TokenId> ids = tokenizer.encode(text);
        token_count = ids.size();
        benchmark::DoNotOptimize(ids.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
    state.counters["tokens"] = static_cast<double>(token_count);
}
BENCHMARK(BM_EncodeEnglish)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeEnglish)->Unit(benchmark::kMillisecond)->UseRealTime()->Threads(2);

// Every piece merged from bytes: a fresh tokenizer (own, empty cache) per iteration, loading
// excluded from the timing.
void BM_EncodeEnglishColdCache(benchmark::State& state) {
    const std::string& text = english_text();
    for (auto _ : state) {
        state.PauseTiming();
        const Tokenizer tokenizer =
            Tokenizer::from_directory(LLMSERVE_SOURCE_DIR "/models/gpt2-brown-mini");
        state.ResumeTiming();
        benchmark::DoNotOptimize(tokenizer.encode(text).data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_EncodeEnglishColdCache)->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_DecodeEnglish(benchmark::State& state) {
    const Tokenizer& tokenizer = gpt2_tokenizer();
    const std::vector<TokenId> ids = tokenizer.encode(english_text());
    for (auto _ : state) benchmark::DoNotOptimize(tokenizer.decode(ids).data());
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * english_text().size()));
}
BENCHMARK(BM_DecodeEnglish)->Unit(benchmark::kMillisecond);

void BM_StreamEnglish(benchmark::State& state) {
    const Tokenizer& tokenizer = gpt2_tokenizer();
    const std::vector<TokenId> ids = tokenizer.encode(english_text());
    for (auto _ : state) {
        StreamingDetokenizer detokenizer(tokenizer);
        std::size_t bytes = 0;
        for (const TokenId id : ids) bytes += detokenizer.push(id).size();
        benchmark::DoNotOptimize(bytes += detokenizer.finish().size());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * english_text().size()));
}
BENCHMARK(BM_StreamEnglish)->Unit(benchmark::kMillisecond);

}  // namespace
