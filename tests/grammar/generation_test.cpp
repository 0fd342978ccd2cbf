// Constrained generation through the engine: random-weight fixture models (vocabulary 1000) and
// the embedded model sample at temperature 1, so the grammar does (nearly) all the work. Every
// output for every schema of tests/fixtures/grammar/generation must finish complete and parse as
// JSON; each is also written to $LLMSERVE_GRAMMAR_OUTPUTS (JSON lines) for the ajv test
// (npm/validate_outputs.mjs) to check against its schema with an independent validator. Tokenizers:
// GPT-2's (the embedded model's), a byte-level BPE vocabulary made here, and Llama 2's
// SentencePiece one (byte fallback; only its first 1000 ids exist in the fixture models).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>

#include "backend/backend.h"
#include "common/error.h"
#include "engine/engine.h"
#include "model/model.h"
#include "tests/grammar/test_support.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::grammar {
namespace {

namespace fs = std::filesystem;
using llmserve::testing::fixtures_dir;
using llmserve::testing::subdirectories;

// 256 byte tokens and pairs of JSON characters, 1000 tokens in all.
std::shared_ptr<const tokenizer::Tokenizer> json_byte_level_tokenizer() {
    const std::string alphabet = "{}[]\",:0123456789-.abcdeflnrstuxyzAB ";
    nlohmann::json vocab = nlohmann::json::object();
    nlohmann::json merges = nlohmann::json::array();
    int id = 0;
    for (int b = 0; b < 256; ++b)
        vocab[tokenizer::bytes_to_vocab_text(std::string(1, static_cast<char>(b)))] = id++;
    for (const char x : alphabet) {
        for (const char y : alphabet) {
            if (id == 1000) break;
            const std::string a(1, x), b(1, y);
            if (vocab.contains(tokenizer::bytes_to_vocab_text(a + b))) continue;
            vocab[tokenizer::bytes_to_vocab_text(a + b)] = id++;
            merges.push_back(tokenizer::bytes_to_vocab_text(a) + " " +
                             tokenizer::bytes_to_vocab_text(b));
        }
    }
    const nlohmann::json json = {
        {"version", "1.0"},
        {"added_tokens", nlohmann::json::array()},
        {"normalizer", nullptr},
        {"pre_tokenizer",
         {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
    return std::make_shared<const tokenizer::Tokenizer>(
        tokenizer::Tokenizer::from_tokenizer_json_text(json.dump(), "json_byte_level_tokenizer"));
}

std::shared_ptr<const model::Model> load_model(const fs::path& dir) {
    return model::Model::load(dir, {backend::make_cpu_backend(1), backend::WeightFormat::kAuto});
}

std::vector<fs::path> schema_files() {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(testing::grammar_fixtures() / "generation"))
        if (entry.path().extension() == ".json") files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    return files;
}

// A model and the tokenizer it samples through (random-weight fixtures pair with any tokenizer:
// the grammar decides everything).
struct ModelSetup {
    std::string name;
    std::shared_ptr<const model::Model> model;
    std::shared_ptr<const tokenizer::Tokenizer> tokenizer;
};

std::vector<ModelSetup> setups() {
    std::vector<ModelSetup> out;
    const fs::path embedded = llmserve::testing::embedded_model_dir();
    out.push_back({"gpt2-brown-mini", load_model(embedded),
                   std::make_shared<const tokenizer::Tokenizer>(
                       tokenizer::Tokenizer::from_directory(embedded))});
    const auto byte_level = json_byte_level_tokenizer();
    const auto llama2 = std::make_shared<const tokenizer::Tokenizer>(
        tokenizer::Tokenizer::from_directory(fixtures_dir() / "tokenizers" / "llama2"));
    // Fixture models whose context (256) holds the corpus's longest outputs.
    for (const char* name : {"qwen3-tiny-qknorm", "mistral-tiny-sliding"}) {
        const fs::path dir = fixtures_dir() / "models-llama" / name;
        if (!fs::exists(dir / "config.json")) continue;
        const auto model = load_model(dir);
        out.push_back({std::string(name) + " + byte-level BPE", model, byte_level});
        out.push_back({std::string(name) + " + llama2 SentencePiece", model, llama2});
    }
    return out;
}

TEST(ConstrainedGeneration, EveryOutputIsACompleteInstance) {
    const auto schemas = schema_files();
    ASSERT_GE(schemas.size(), 5u);
    const char* outputs_path = std::getenv("LLMSERVE_GRAMMAR_OUTPUTS");
    std::ofstream outputs;
    if (outputs_path != nullptr && *outputs_path != '\0') outputs.open(outputs_path);
    int checked = 0;
    std::uint64_t seed = 1;
    for (const ModelSetup& setup : setups()) {
        engine::Engine engine(setup.model, setup.tokenizer, engine::EngineOptions{});
        std::vector<std::pair<fs::path, std::shared_ptr<engine::RequestHandle>>> handles;
        for (const fs::path& schema : schemas) {
            engine::GenerationRequest request;
            request.prompt = setup.tokenizer->encode("JSON:", false);
            // Llama 2's ids of that text lie beyond the fixture models' 1000: any prompt will do.
            if (std::any_of(request.prompt.begin(), request.prompt.end(),
                            [&](int id) { return id >= setup.model->config().vocab_size; }))
                request.prompt = {3, 4, 5};
            request.n = 2;
            request.sampling.temperature = 1.0f;
            request.sampling.top_p = 1.0f;
            request.sampling.seed = seed++;
            request.stop.max_new_tokens =
                setup.model->config().n_positions - static_cast<int>(request.prompt.size());
            request.constraint = compile_constraint(
                {ConstraintSpec::Kind::kJsonSchema, llmserve::testing::read_text(schema), {}, ""});
            handles.emplace_back(schema, engine.submit(std::move(request)));
        }
        for (auto& [schema, handle] : handles) {
            const engine::RequestResult result = handle->wait();
            ASSERT_TRUE(result.error.empty()) << result.error;
            for (const auto& sequence : result.sequences) {
                SCOPED_TRACE(fmt::format("{} on {}: {}", schema.filename().string(), setup.name,
                                         sequence.text));
                EXPECT_EQ(sequence.finish_reason, engine::FinishReason::kStop);
                EXPECT_TRUE(nlohmann::json::accept(sequence.text));
                if (outputs.is_open())
                    outputs << nlohmann::json{{"schema", schema.string()},
                                              {"output", sequence.text}}
                                   .dump()
                            << "\n";
                ++checked;
            }
        }
    }
    EXPECT_GE(checked, static_cast<int>(schemas.size() * 2 * 5));
}

TEST(ConstrainedGeneration, RegexAndChoiceOutputsMatch) {
    const auto model = load_model(fixtures_dir() / "models-llama" / "qwen3-tiny-qknorm");
    const auto tokenizer = json_byte_level_tokenizer();
    engine::Engine engine(model, tokenizer, engine::EngineOptions{});
    const std::vector<ConstraintSpec> specs = {
        {ConstraintSpec::Kind::kRegex, "[a-c]{2,5}-\\d{3}", {}, ""},
        {ConstraintSpec::Kind::kChoice, "", {"alpha", "beta", "gamma delta"}, ""},
        {ConstraintSpec::Kind::kGrammar,
         "root ::= \"[\" [0-9]{1,3} (\",\" [0-9]{1,3}){0,4} \"]\"",
         {},
         ""}};
    for (const auto& spec : specs) {
        const auto constraint = compile_constraint(spec);
        engine::GenerationRequest request;
        request.prompt = tokenizer->encode("x", false);
        request.n = 3;
        request.sampling.temperature = 1.0f;
        request.sampling.seed = 11;
        request.stop.max_new_tokens = 100;
        request.constraint = constraint;
        const auto result = engine.submit(std::move(request))->wait();
        ASSERT_TRUE(result.error.empty()) << result.error;
        for (const auto& sequence : result.sequences) {
            // The grammar's own matcher is the reference for these; finishing as kStop means no
            // further byte was possible, or the model chose EOS at an allowed end.
            EXPECT_TRUE(testing::matches(*constraint, sequence.text)) << sequence.text;
            EXPECT_TRUE(sequence.finish_reason == engine::FinishReason::kStop ||
                        sequence.finish_reason == engine::FinishReason::kEos)
                << sequence.text;
        }
    }
}

}  // namespace
}  // namespace llmserve::grammar

namespace llmserve::grammar {
namespace {

TEST(ConstrainedGeneration, NeedsATokenizer) {
    const auto model = load_model(fixtures_dir() / "models-llama" / "qwen3-tiny-qknorm");
    engine::Engine engine(model, nullptr, engine::EngineOptions{});
    engine::GenerationRequest request;
    request.prompt = {3, 4};
    request.constraint = compile_constraint({ConstraintSpec::Kind::kChoice, "", {"a"}, ""});
    try {
        engine.submit(std::move(request));
        ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.param(), "constraint");
        EXPECT_NE(std::string(e.what()).find("needs a tokenizer"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace llmserve::grammar
