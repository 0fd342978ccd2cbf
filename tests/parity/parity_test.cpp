// Parity with Hugging Face transformers: every model folder under $LLMSERVE_FIXTURES/models (and
// models-bin, and the Llama-family models-llama), every case of its reference.json: logits at every
// position within 1e-4·(1+|ref|), and greedy tokens identical up to the first step whose reference
// margin is below 1e-3. Cases and folders are discovered, never listed.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "engine/engine.h"
#include "model/model.h"
#include "tests/common/model_runs.h"
#include "tests/common/test_paths.h"
#include "tokenizer/tokenizer.h"

namespace llmserve {
namespace {

using nlohmann::json;
constexpr double kLogitTolerance = 1e-4;
constexpr double kMarginFloor = 1e-3;

std::shared_ptr<backend::Backend> cpu() {
    static std::shared_ptr<backend::Backend> backend = backend::make_cpu_backend(0);
    return backend;
}

void check_model_folder(const std::filesystem::path& dir, int& cases) {
    SCOPED_TRACE("model folder " + dir.string());
    const json reference = json::parse(testing::read_text(dir / "reference.json"));
    auto model = model::Model::load(dir, {cpu(), backend::WeightFormat::kAuto});
    engine::Engine engine(model, nullptr, {});
    const int vocab = model->config().vocab_size;
    for (const json& c : reference.at("cases")) {
        SCOPED_TRACE("case " + std::to_string(cases));
        const auto ids = c.at("input_ids").get<std::vector<std::int32_t>>();
        const auto shape = c.at("logits_shape").get<std::vector<std::size_t>>();
        const auto expected = testing::read_f32(dir / c.at("logits_file").get<std::string>());
        EXPECT_EQ(shape.at(0), ids.size());
        EXPECT_EQ(shape.at(1), static_cast<std::size_t>(vocab));
        EXPECT_EQ(expected.size(), shape.at(0) * shape.at(1));
        const auto got = testing::full_logits(*model, ids);
        ASSERT_EQ(got.size(), expected.size());
        const testing::WorstError worst = testing::worst_relative_error(got, expected);
        EXPECT_LE(worst.excess, kLogitTolerance)
            << "position " << worst.index / vocab << ", token " << worst.index % vocab << ": got "
            << got[worst.index] << ", reference " << expected[worst.index];
        const auto expected_tokens = c.at("greedy_new_tokens").get<std::vector<std::int32_t>>();
        // Greedy tokens up to the first step where the reference itself was a near-tie.
        testing::expect_greedy_match(
            testing::greedy_tokens(engine, ids, static_cast<int>(expected_tokens.size())),
            expected_tokens, c.at("greedy_margins").get<std::vector<double>>(), kMarginFloor);
        ++cases;
    }
}

void check_fixture_family(const std::string& family) {
    const auto folders = testing::subdirectories(testing::fixtures_dir() / family);
    int cases = 0;
    for (const auto& dir : folders) check_model_folder(dir, cases);
    ::testing::Test::RecordProperty(family + "_cases", cases);
    EXPECT_GT(cases, 0) << "no cases found under " << family;
    std::cout << family << ": " << folders.size() << " model folders, " << cases << " cases\n";
}

TEST(Parity, SafetensorsModels) {
    ASSERT_FALSE(testing::subdirectories(testing::fixtures_dir() / "models").empty())
        << "no model folders under " << testing::fixtures_dir() / "models";
    check_fixture_family("models");
}

TEST(Parity, PytorchBinModels) {
    const auto dir = testing::fixtures_dir() / "models-bin";
    if (!std::filesystem::exists(dir)) {
        GTEST_SKIP() << "no models-bin folder in " << testing::fixtures_dir();
    }
    check_fixture_family("models-bin");
}

// Llama, Mistral (sliding window), Qwen2 (q/k/v biases, bf16), Qwen3 (q/k norm, head_dim override),
// Llama 3.1 RoPE scaling, f16 shards: whatever folders models-llama holds.
TEST(Parity, LlamaFamilyModels) {
    const auto dir = testing::fixtures_dir() / "models-llama";
    if (!std::filesystem::exists(dir)) {
        GTEST_SKIP() << "no models-llama folder in " << testing::fixtures_dir();
    }
    check_fixture_family("models-llama");
}

// The embedded model end to end: prompt text in, tokens and text out, equal to transformers' greedy
// continuation.
TEST(Parity, EmbeddedModelGreedyContinuations) {
    const auto dir = testing::embedded_model_dir();
    auto tok =
        std::make_shared<const tokenizer::Tokenizer>(tokenizer::Tokenizer::from_directory(dir));
    engine::Engine engine(model::Model::load(dir, {cpu(), backend::WeightFormat::kAuto}), tok, {});
    testing::expect_reference_continuations(engine, *tok, dir, kMarginFloor);
}

}  // namespace
}  // namespace llmserve
