// CUDA graphs: the host-side bookkeeping (signatures, staged inputs) on any machine, and on a GPU
// the end-to-end rule that replaying graphs computes exactly what launching every kernel does.
#include <gtest/gtest.h>

#include <numeric>

#include "backend/cuda/step_recorder.h"
#include "engine/engine.h"
#include "model/gpt2.h"
#include "tests/backend_cuda/cuda_test_support.h"
#include "tests/common/model_runs.h"

namespace llmserve::testing {
namespace {

using backend::cuda::staging_capacity;
using backend::cuda::StepRecorder;

TEST(StepRecorder, CapacitiesArePowersOfTwoOfAtLeastSixteen) {
    EXPECT_EQ(staging_capacity(0), 16u);
    EXPECT_EQ(staging_capacity(16), 16u);
    EXPECT_EQ(staging_capacity(17), 32u);
    EXPECT_EQ(staging_capacity(1000), 1024u);
    EXPECT_EQ(staging_capacity(1024), 1024u);
}

TEST(StepRecorder, InputsAreStagedAtOffsetsThatDependOnlyOnTheirCapacities) {
    StepRecorder recorder;
    const std::vector<int> ids = {5, 6, 7};
    std::vector<int> table(20);
    std::iota(table.begin(), table.end(), 100);
    EXPECT_EQ(recorder.stage(ids), 0u);
    EXPECT_EQ(recorder.stage(table), 16u);
    ASSERT_EQ(recorder.staged().size(), 16u + 32u);
    EXPECT_EQ(recorder.staged()[1], 6);
    EXPECT_EQ(recorder.staged()[3], 0) << "padding is zero";
    EXPECT_EQ(recorder.staged()[16 + 19], 119);
    EXPECT_EQ(recorder.staged()[16 + 20], 0);

    // The same calls with other values (and a table within the same capacity) give the same
    // signature and record: a graph captured from one pass serves the other.
    StepRecorder other;
    other.stage(std::vector<int>{1, 2, 3});
    other.stage(std::vector<int>(25, 9));
    EXPECT_EQ(other.signature(), recorder.signature());
    EXPECT_TRUE(std::ranges::equal(other.record(), recorder.record()));
    // A table past the capacity does not.
    StepRecorder longer;
    longer.stage(std::vector<int>{1, 2, 3});
    longer.stage(std::vector<int>(33, 9));
    EXPECT_NE(longer.signature(), recorder.signature());
}

TEST(StepRecorder, NotesDistinguishCallsAndClearForgetsEverything) {
    StepRecorder a, b;
    int buffer[2] = {};
    a.note(1, &buffer[0], 4.5f);
    b.note(1, &buffer[1], 4.5f);
    EXPECT_NE(a.signature(), b.signature()) << "another pointer is another pass";
    EXPECT_FALSE(std::ranges::equal(a.record(), b.record()));
    b.clear();
    b.note(1, &buffer[0], 4.5f);
    EXPECT_EQ(a.signature(), b.signature());
    EXPECT_TRUE(std::ranges::equal(a.record(), b.record()));

    float host = 0;
    b.defer_copy({&buffer[0], &host, sizeof(float)});
    b.stage(std::vector<int>{1});
    b.clear();
    EXPECT_TRUE(b.host_copies().empty());
    EXPECT_TRUE(b.staged().empty());
    EXPECT_TRUE(b.record().empty());
    EXPECT_FALSE(b.find_last(std::vector<int>{1}).has_value());
}

TEST(StepRecorder, FindsOnlyAnExactRepeatOfTheLastInput) {
    StepRecorder recorder;
    const std::vector<int> batch = {0, 1, 0, 0, 7, 8};
    EXPECT_FALSE(recorder.find_last(batch).has_value());
    recorder.stage(std::vector<int>{4, 4});
    const std::size_t offset = recorder.stage(batch);
    ASSERT_TRUE(recorder.find_last(batch).has_value());
    EXPECT_EQ(*recorder.find_last(batch), offset);
    EXPECT_FALSE(recorder.find_last(std::vector<int>{0, 1, 0, 0, 7, 9}).has_value());
    EXPECT_FALSE(recorder.find_last(std::vector<int>{0, 1, 0, 0, 7}).has_value());
    EXPECT_FALSE(recorder.find_last(std::vector<int>{4, 4}).has_value()) << "only the last one";
}

// What a run of requests produced, token by token, with each token's logprob bits.
struct Outputs {
    std::vector<std::vector<std::int32_t>> tokens;
    std::vector<std::vector<float>> logprobs;
};

// Phase 1: short prompts decoded together (graphs captured and replayed). Phase 2: a long prompt
// joins (its prefill grows the GEMM scratch, which invalidates every graph) while short ones
// decode. Greedy with logprobs, so that any difference in any logit shows.
Outputs run_phases(engine::Engine& engine, int vocab) {
    std::uint64_t state = 7;
    auto prompt = [&](int length) {
        std::vector<std::int32_t> ids(length);
        for (auto& id : ids) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            id = static_cast<std::int32_t>((state >> 33) % static_cast<std::uint64_t>(vocab));
        }
        return ids;
    };
    Outputs out;
    for (const std::vector<int>& lengths : {std::vector<int>{3, 5, 8, 13}, {200, 4, 9}}) {
        std::vector<std::shared_ptr<engine::RequestHandle>> handles;
        for (int length : lengths) {
            auto request = greedy_request(prompt(length), 24);
            request.sampling.logprobs = 1;
            if (length == 5) request.n = 2;
            handles.push_back(engine.submit(std::move(request)));
        }
        for (auto& handle : handles)
            for (const auto& sequence : handle->wait().sequences) {
                out.tokens.emplace_back();
                out.logprobs.emplace_back();
                for (const auto& token : sequence.tokens) {
                    out.tokens.back().push_back(token.token);
                    out.logprobs.back().push_back(token.logprob);
                }
            }
    }
    return out;
}

class CudaGraphs : public CudaDeviceTest {};

TEST_F(CudaGraphs, ReplayComputesExactlyWhatLaunchingEveryKernelDoes) {
    const auto dir = repository_dir() / "models" / "gpt2-brown-mini";
    std::shared_ptr<backend::Backend> eager = backend::make_cuda_backend(0, {.graphs = false});
    std::shared_ptr<backend::Backend> graphs = backend::make_cuda_backend(0, {.graphs = true});
    for (backend::KvFormat format : {backend::KvFormat::kF32, backend::KvFormat::kF16}) {
        SCOPED_TRACE(std::string(backend::to_string(format)) + " KV cache");
        engine::EngineOptions options;
        options.kv_format = format;
        auto eager_model = model::Gpt2Model::load(dir, {eager, backend::WeightFormat::kAuto});
        auto graph_model = model::Gpt2Model::load(dir, {graphs, backend::WeightFormat::kAuto});
        const int vocab = eager_model->config().vocab_size;
        engine::Engine eager_engine(eager_model, nullptr, options);
        engine::Engine graph_engine(graph_model, nullptr, options);
        const backend::CudaGraphStats before = backend::cuda_graph_stats(*graphs);
        const Outputs want = run_phases(eager_engine, vocab);
        const Outputs got = run_phases(graph_engine, vocab);
        const backend::CudaGraphStats after = backend::cuda_graph_stats(*graphs);

        ASSERT_EQ(got.tokens.size(), want.tokens.size());
        for (std::size_t s = 0; s < got.tokens.size(); ++s) {
            EXPECT_EQ(got.tokens[s], want.tokens[s]) << "sequence " << s;
            ASSERT_EQ(got.logprobs[s].size(), want.logprobs[s].size());
            for (std::size_t t = 0; t < got.logprobs[s].size(); ++t)
                EXPECT_EQ(got.logprobs[s][t], want.logprobs[s][t])
                    << "sequence " << s << ", token " << t;
        }
        EXPECT_GT(after.captures, before.captures) << "no graph was captured";
        EXPECT_GT(after.replays - before.replays, after.captures - before.captures)
            << "no graph was replayed";
        EXPECT_EQ(backend::cuda_graph_stats(*eager).replays, 0u);
        std::cout << backend::to_string(format) << " KV cache: " << after.captures - before.captures
                  << " graphs captured, " << after.replays - before.replays << " replays, "
                  << after.eager_passes - before.eager_passes << " eager passes\n";
    }
}

}  // namespace
}  // namespace llmserve::testing
