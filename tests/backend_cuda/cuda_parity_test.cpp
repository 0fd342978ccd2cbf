// Parity with Hugging Face transformers on the GPU: every model folder under
// $LLMSERVE_FIXTURES/models and every case of its reference.json, the embedded model's greedy
// continuations, and batched == unbatched through the Engine. Cases and folders are discovered.
//
// Tolerances. With f32 weights the GPU computes in float32 throughout: the CPU suite's bounds
// apply (logits within 1e-4·(1+|ref|), greedy tokens equal while the reference margin is >= 1e-3).
// With f16 weights (the default) every GEMM rounds both of its inputs to f16 (relative error
// 2^-11 each) and accumulates in float32; the logits then carry an error that grows with the depth
// and the size of the activations. An emulation of exactly that arithmetic on the CPU (weights and
// every GEMM input rounded to f16, float32 elsewhere) stayed within 6e-3·(1+|ref|), 8e-3 absolute,
// on every case of the vendored fixtures (logits up to 14), and changed no greedy token of them or
// of the embedded model. We allow 2e-2·(1+|ref|), about 3x that, while a layout or indexing bug
// gives errors of order 1. A greedy step can flip only where the top two logits are closer than
// the sum of their errors (<= 0.016 above), so tokens are compared while the reference margin is
// >= 0.05. An f16 KV cache rounds keys and values the same way (2^-11 relative) once more; the same
// bounds apply to it.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <iostream>

#include "engine/engine.h"
#include "model/model.h"
#include "tests/backend_cuda/cuda_test_support.h"
#include "tests/common/model_runs.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::testing {
namespace {

using nlohmann::json;

struct Precision {
    backend::WeightFormat format;
    double logit_tolerance;  // |got - ref| <= tolerance·(1 + |ref|)
    double margin_floor;     // greedy tokens are compared up to the first smaller reference margin
    backend::KvFormat kv_format = backend::KvFormat::kF32;
};
constexpr Precision kF16{backend::WeightFormat::kAuto, 2e-2, 0.05};
constexpr Precision kF16Cache{backend::WeightFormat::kAuto, 2e-2, 0.05, backend::KvFormat::kF16};
constexpr Precision kF32{backend::WeightFormat::kF32, 1e-4, 1e-3};

// The top two logprobs of each step give the step's own margin.
constexpr int kMarginLogprobs = 2;

// greedy_request, with the logprobs that give each step's margin.
engine::GenerationRequest greedy_with_margins(const std::vector<std::int32_t>& prompt,
                                              int new_tokens) {
    engine::GenerationRequest request = greedy_request(prompt, new_tokens);
    request.sampling.logprobs = kMarginLogprobs;
    return request;
}

struct Continuation {
    std::vector<std::int32_t> tokens;
    std::vector<double> margins;  // top-1 minus top-2 logit at each step
};

Continuation continuation(const engine::SequenceResult& sequence) {
    Continuation c;
    for (const auto& t : sequence.tokens) {
        c.tokens.push_back(t.token);
        c.margins.push_back(t.top.size() >= 2 ? t.top[0].logprob - t.top[1].logprob : INFINITY);
    }
    return c;
}

class CudaParity : public CudaDeviceTest {
  protected:
    std::shared_ptr<const model::Model> load(const std::filesystem::path& dir,
                                             const Precision& precision) {
        return model::Model::load(dir, {cuda, precision.format});
    }

    void check_models(const Precision& precision) {
        const auto folders = subdirectories(fixtures_dir() / "models");
        ASSERT_FALSE(folders.empty()) << "no model folders under " << fixtures_dir() / "models";
        int cases = 0;
        for (const auto& dir : folders) {
            SCOPED_TRACE("model folder " + dir.string());
            const json reference = json::parse(read_text(dir / "reference.json"));
            auto model = load(dir, precision);
            engine::EngineOptions options;
            options.kv_format = precision.kv_format;
            engine::Engine engine(model, nullptr, options);
            const int vocab = model->config().vocab_size;
            double folder_worst = 0.0;
            for (const json& c : reference.at("cases")) {
                SCOPED_TRACE("case " + std::to_string(cases));
                const auto ids = c.at("input_ids").get<std::vector<std::int32_t>>();
                const auto expected = read_f32(dir / c.at("logits_file").get<std::string>());
                const auto got =
                    ForwardPass(*model, static_cast<int>(ids.size()), precision.kv_format)
                        .logits(ids);
                ASSERT_EQ(got.size(), expected.size());
                const WorstError worst = worst_relative_error(got, expected);
                folder_worst = std::max(folder_worst, worst.excess);
                EXPECT_LE(worst.excess, precision.logit_tolerance)
                    << "position " << worst.index / vocab << ", token " << worst.index % vocab
                    << ": got " << got[worst.index] << ", reference " << expected[worst.index];
                const auto tokens = c.at("greedy_new_tokens").get<std::vector<std::int32_t>>();
                auto result =
                    engine.submit(greedy_with_margins(ids, static_cast<int>(tokens.size())))
                        ->wait();
                expect_greedy_match(continuation(result.sequences.at(0)).tokens, tokens,
                                    c.at("greedy_margins").get<std::vector<double>>(),
                                    precision.margin_floor);
                ++cases;
            }
            std::cout << dir.filename().string() << " (" << model->stored_dtype() << " stored, "
                      << backend::to_string(precision.format) << ", "
                      << backend::to_string(precision.kv_format) << " KV cache on "
                      << model->device_name() << "): worst logit error " << folder_worst
                      << "·(1+|ref|)\n";
        }
        EXPECT_GT(cases, 0) << "no cases found";
    }
};

TEST_F(CudaParity, FixtureModelsF16) {
    check_models(kF16);
}

TEST_F(CudaParity, FixtureModelsF16WithF16Cache) {
    check_models(kF16Cache);
}

TEST_F(CudaParity, FixtureModelsF32) {
    check_models(kF32);
}

// Prompt text in, tokens and text out, equal to transformers' greedy continuation.
TEST_F(CudaParity, EmbeddedModelGreedyContinuations) {
    const auto dir = repository_dir() / "models" / "gpt2-brown-mini";
    auto tok =
        std::make_shared<const tokenizer::Tokenizer>(tokenizer::Tokenizer::from_directory(dir));
    engine::Engine engine(load(dir, kF16), tok, {});
    expect_reference_continuations(engine, *tok, dir, kF16.margin_floor, kMarginLogprobs);
}

// Every prompt of a model run alone, then all at once (the last one with two samples, which share
// the prompt's KV blocks and copy the partial one): each batched continuation equals its
// unbatched one up to the first step where the unbatched run itself had a margin below the f16
// floor.
struct Prompt {
    std::vector<std::int32_t> ids;
    int new_tokens = 0;
};

// The prompts of a reference file (cases[] of a fixture folder, or the embedded model's list),
// each with as many new tokens as its reference continuation.
std::vector<Prompt> reference_prompts(const json& cases) {
    std::vector<Prompt> prompts;
    for (const json& c : cases)
        prompts.push_back({c.at("input_ids").get<std::vector<std::int32_t>>(),
                           static_cast<int>(c.at("greedy_new_tokens").size())});
    return prompts;
}

void check_batched_equals_unbatched(engine::Engine& engine, const std::vector<Prompt>& prompts) {
    ASSERT_FALSE(prompts.empty());
    std::vector<Continuation> alone;
    for (const Prompt& prompt : prompts)
        alone.push_back(
            continuation(engine.submit(greedy_with_margins(prompt.ids, prompt.new_tokens))
                             ->wait()
                             .sequences.at(0)));

    const engine::EngineStats before = engine.stats();
    std::vector<std::shared_ptr<engine::RequestHandle>> handles;
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        auto request = greedy_with_margins(prompts[i].ids, prompts[i].new_tokens);
        if (i + 1 == prompts.size()) request.n = 2;
        handles.push_back(engine.submit(std::move(request)));
    }
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        SCOPED_TRACE("prompt " + std::to_string(i));
        const auto result = handles[i]->wait();
        for (const auto& sequence : result.sequences)
            expect_greedy_match(continuation(sequence).tokens, alone[i].tokens, alone[i].margins,
                                kF16.margin_floor);
    }
    const engine::EngineStats after = engine.stats();
    EXPECT_GT(after.step_sequences_total - before.step_sequences_total, after.steps - before.steps)
        << "no step ran more than one sequence: nothing was batched";
}

TEST_F(CudaParity, BatchedEqualsUnbatched) {
    for (const auto& dir : subdirectories(fixtures_dir() / "models")) {
        SCOPED_TRACE("model folder " + dir.string());
        const json reference = json::parse(read_text(dir / "reference.json"));
        engine::Engine engine(load(dir, kF16), nullptr, {});
        check_batched_equals_unbatched(engine, reference_prompts(reference.at("cases")));
    }
    const auto embedded = repository_dir() / "models" / "gpt2-brown-mini";
    const json reference =
        json::parse(read_text(embedded.parent_path() / "gpt2-brown-mini.reference.json"));
    engine::Engine engine(load(embedded, kF16), nullptr, {});
    SCOPED_TRACE("embedded model");
    check_batched_equals_unbatched(engine, reference_prompts(reference));
}

}  // namespace
}  // namespace llmserve::testing
