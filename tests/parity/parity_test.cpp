// Parity with Hugging Face transformers: every model folder under $LLMSERVE_FIXTURES/models (and
// models-bin), every case of its reference.json: logits at every position within 1e-4·(1+|ref|),
// and greedy tokens identical up to the first step whose reference margin is below 1e-3. Cases and
// folders are discovered, never listed.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "backend/backend.h"
#include "engine/engine.h"
#include "model/gpt2.h"
#include "tests/common/test_paths.h"
#include "tokenizer/tokenizer.h"

namespace llmserve {
namespace {

using nlohmann::json;
constexpr double kLogitTolerance = 1e-4;
constexpr double kMarginFloor = 1e-3;

std::vector<float> read_f32(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    EXPECT_TRUE(in) << "cannot open " << file;
    in.seekg(0, std::ios::end);
    std::vector<float> values(static_cast<std::size_t>(in.tellg()) / sizeof(float));
    in.seekg(0);
    in.read(reinterpret_cast<char*>(values.data()),
            static_cast<std::streamsize>(values.size() * sizeof(float)));
    return values;
}

// Runs all of `ids` through the model in one batch, returning [T, vocab] logits.
std::vector<float> full_logits(const model::Gpt2Model& model,
                               const std::vector<std::int32_t>& ids) {
    const auto& config = model.config();
    const int rows = static_cast<int>(ids.size());
    const int block_tokens = 16;
    const int blocks = (rows + block_tokens - 1) / block_tokens;
    auto kv = model.backend().allocate_kv(config.n_layer, blocks, block_tokens, config.n_embd);
    model::Workspace workspace(model.backend(), config, rows, rows);
    std::vector<int> table(blocks);
    for (int b = 0; b < blocks; ++b) table[b] = b;
    model::Batch batch;
    batch.tokens = ids;
    for (int i = 0; i < rows; ++i) {
        batch.positions.push_back(i);
        batch.row_sequence.push_back(0);
        batch.logits_rows.push_back(i);
    }
    batch.block_tables.emplace_back(table);
    std::vector<float> logits(static_cast<std::size_t>(rows) * config.vocab_size);
    model.forward(batch, *kv, workspace, logits);
    return logits;
}

std::vector<std::int32_t> greedy(engine::Engine& engine, const std::vector<std::int32_t>& prompt,
                                 int new_tokens) {
    engine::GenerationRequest request;
    request.prompt = prompt;
    request.sampling.temperature = 0.0f;
    request.stop.max_new_tokens = new_tokens;
    request.stop.ignore_eos = true;  // the reference is plain argmax decoding with no stopping rule
    auto result = engine.submit(request)->wait();
    std::vector<std::int32_t> tokens;
    for (const auto& t : result.sequences.at(0).tokens) tokens.push_back(t.token);
    return tokens;
}

// Compares greedy tokens up to the first step where the reference itself was a near-tie.
void expect_greedy_match(const std::vector<std::int32_t>& got, const json& reference) {
    const auto expected = reference.at("greedy_new_tokens").get<std::vector<std::int32_t>>();
    const auto margins = reference.at("greedy_margins").get<std::vector<double>>();
    ASSERT_EQ(got.size(), expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        if (i < margins.size() && margins[i] < kMarginFloor) break;
        ASSERT_EQ(got[i], expected[i])
            << "greedy token " << i << " differs (reference margin " << margins[i] << ")";
    }
}

std::shared_ptr<backend::Backend> cpu() {
    static std::shared_ptr<backend::Backend> backend = backend::make_cpu_backend(0);
    return backend;
}

void check_model_folder(const std::filesystem::path& dir, int& cases) {
    SCOPED_TRACE("model folder " + dir.string());
    const json reference = json::parse(testing::read_text(dir / "reference.json"));
    auto model = model::Gpt2Model::load(dir, {cpu(), backend::WeightFormat::kAuto});
    engine::Engine engine(model, nullptr, {});
    const int vocab = model->config().vocab_size;
    for (const json& c : reference.at("cases")) {
        SCOPED_TRACE("case " + std::to_string(cases));
        const auto ids = c.at("input_ids").get<std::vector<std::int32_t>>();
        const auto shape = c.at("logits_shape").get<std::vector<std::size_t>>();
        const auto expected = read_f32(dir / c.at("logits_file").get<std::string>());
        EXPECT_EQ(shape.at(0), ids.size());
        EXPECT_EQ(shape.at(1), static_cast<std::size_t>(vocab));
        EXPECT_EQ(expected.size(), shape.at(0) * shape.at(1));
        const auto got = full_logits(*model, ids);
        ASSERT_EQ(got.size(), expected.size());
        double worst = 0.0;
        std::size_t worst_index = 0;
        for (std::size_t i = 0; i < got.size(); ++i) {
            const double excess = std::abs(got[i] - expected[i]) / (1.0 + std::abs(expected[i]));
            if (!(excess <= worst)) {
                worst = excess;
                worst_index = i;
            }
        }
        EXPECT_LE(worst, kLogitTolerance)
            << "position " << worst_index / vocab << ", token " << worst_index % vocab << ": got "
            << got[worst_index] << ", reference " << expected[worst_index];
        const auto expected_tokens = c.at("greedy_new_tokens").get<std::vector<std::int32_t>>();
        expect_greedy_match(greedy(engine, ids, static_cast<int>(expected_tokens.size())), c);
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

// The embedded model end to end: prompt text in, tokens and text out, equal to transformers' greedy
// continuation.
TEST(Parity, EmbeddedModelGreedyContinuations) {
    const auto dir = testing::embedded_model_dir();
    const json reference =
        json::parse(testing::read_text(dir.parent_path() / "gpt2-brown-mini.reference.json"));
    ASSERT_FALSE(reference.empty());
    auto model = model::Gpt2Model::load(dir, {cpu(), backend::WeightFormat::kAuto});
    auto tok =
        std::make_shared<const tokenizer::Tokenizer>(tokenizer::Tokenizer::from_directory(dir));
    engine::Engine engine(model, tok, {});
    for (const json& c : reference) {
        const auto prompt = c.at("prompt").get<std::string>();
        SCOPED_TRACE("prompt '" + prompt + "'");
        const auto ids = tok->encode(prompt);
        ASSERT_EQ(ids, c.at("input_ids").get<std::vector<std::int32_t>>());
        const auto expected = c.at("greedy_new_tokens").get<std::vector<std::int32_t>>();
        engine::GenerationRequest request;
        request.prompt = ids;
        request.sampling.temperature = 0.0f;
        request.stop.max_new_tokens = static_cast<int>(expected.size());
        request.stop.ignore_eos = true;
        auto result = engine.submit(request)->wait();
        std::vector<std::int32_t> got;
        for (const auto& t : result.sequences.at(0).tokens) got.push_back(t.token);
        expect_greedy_match(got, c);
        if (got == expected) {
            EXPECT_EQ(result.sequences.at(0).text, c.at("greedy_text").get<std::string>());
        }
    }
}

}  // namespace
}  // namespace llmserve
