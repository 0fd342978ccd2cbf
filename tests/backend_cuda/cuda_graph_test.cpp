// CUDA graphs: the host-side bookkeeping (signatures, staged inputs, which graphs to keep) on any
// machine, and on a GPU the end-to-end rule that replaying graphs computes exactly what launching
// every kernel does.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "backend/cuda/graph_cache.h"
#include "backend/cuda/step_recorder.h"
#include "model/model.h"
#include "tests/backend_cuda/cuda_test_support.h"

namespace llmserve::testing {
namespace {

using backend::cuda::GraphCache;
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

// GraphCache with ints for graphs, recording which were destroyed.
struct CacheHarness {
    std::vector<int> destroyed;
    GraphCache<int> cache{2, [this](int& graph) { destroyed.push_back(graph); }};
    static std::vector<unsigned char> record(unsigned char tag) { return {tag, 1, 2, 3}; }
};

TEST(GraphCache, EagerFirstThenCaptureThenReplay) {
    CacheHarness h;
    const auto record = CacheHarness::record(7);
    EXPECT_EQ(h.cache.decide(7, record).action, GraphCache<int>::Action::kEager);
    h.cache.ran_eagerly(7);
    EXPECT_EQ(h.cache.decide(7, record).action, GraphCache<int>::Action::kCapture);
    h.cache.add(7, record, 70);
    const auto replay = h.cache.decide(7, record);
    ASSERT_EQ(replay.action, GraphCache<int>::Action::kReplay);
    ASSERT_NE(replay.graph, nullptr);
    EXPECT_EQ(*replay.graph, 70);
    EXPECT_TRUE(h.destroyed.empty());
}

TEST(GraphCache, ARecordThatFailedToCaptureStaysEager) {
    CacheHarness h;
    const auto record = CacheHarness::record(3);
    h.cache.ran_eagerly(3);
    h.cache.capture_failed(3);
    EXPECT_EQ(h.cache.decide(3, record).action, GraphCache<int>::Action::kEager);
}

TEST(GraphCache, SameHashWithAnotherRecordNeverReplaysTheOthersGraph) {
    CacheHarness h;
    h.cache.ran_eagerly(5);
    h.cache.add(5, CacheHarness::record(1), 10);
    EXPECT_EQ(h.cache.decide(5, CacheHarness::record(2)).action, GraphCache<int>::Action::kCapture);
    h.cache.add(5, CacheHarness::record(2), 20);  // replaces (and frees) the first
    EXPECT_EQ(h.destroyed, std::vector<int>{10});
    EXPECT_EQ(h.cache.size(), 1u);
    EXPECT_EQ(*h.cache.decide(5, CacheHarness::record(2)).graph, 20);
}

TEST(GraphCache, TheLeastRecentlyUsedGraphGoesFirst) {
    CacheHarness h;  // room for two
    h.cache.add(1, CacheHarness::record(1), 10);
    h.cache.add(2, CacheHarness::record(2), 20);
    h.cache.decide(1, CacheHarness::record(1));  // 1 is now the most recently used
    h.cache.add(3, CacheHarness::record(3), 30);
    EXPECT_EQ(h.destroyed, std::vector<int>{20});
    EXPECT_EQ(h.cache.decide(1, CacheHarness::record(1)).action, GraphCache<int>::Action::kReplay);
    EXPECT_EQ(h.cache.decide(3, CacheHarness::record(3)).action, GraphCache<int>::Action::kReplay);
    EXPECT_NE(h.cache.decide(2, CacheHarness::record(2)).action, GraphCache<int>::Action::kReplay);
}

TEST(GraphCache, MovedMemoryDropsEveryGraphButRecordsStayWarm) {
    CacheHarness h;
    EXPECT_FALSE(h.cache.invalidate_if_moved(1)) << "no graphs yet: nothing dropped";
    h.cache.ran_eagerly(1);
    h.cache.add(1, CacheHarness::record(1), 10);
    h.cache.add(2, CacheHarness::record(2), 20);
    EXPECT_FALSE(h.cache.invalidate_if_moved(1)) << "same generation";
    EXPECT_EQ(h.cache.size(), 2u);
    EXPECT_TRUE(h.cache.invalidate_if_moved(2));
    EXPECT_EQ(h.cache.size(), 0u);
    std::sort(h.destroyed.begin(), h.destroyed.end());
    EXPECT_EQ(h.destroyed, (std::vector<int>{10, 20}));
    EXPECT_EQ(h.cache.decide(1, CacheHarness::record(1)).action, GraphCache<int>::Action::kCapture);
}

TEST(GraphCache, DestroysWhatItHoldsWhenDestroyed) {
    std::vector<int> destroyed;
    {
        GraphCache<int> cache(4, [&](int& graph) { destroyed.push_back(graph); });
        cache.add(1, CacheHarness::record(1), 10);
        cache.add(2, CacheHarness::record(2), 20);
    }
    std::sort(destroyed.begin(), destroyed.end());
    EXPECT_EQ(destroyed, (std::vector<int>{10, 20}));
}

// A fixed script of forward passes over a private KV cache, so that two backends see exactly the
// same passes (through the engine, how rows group into steps depends on thread timing). Sequence s
// owns blocks [s * kBlocksPerSequence, (s + 1) * kBlocksPerSequence).
class ScriptedPasses {
  public:
    static constexpr int kSequences = 5, kBlocksPerSequence = 16, kBlockTokens = 16;

    ScriptedPasses(const model::Model& model, backend::KvFormat format)
        : model_(model),
          kv_(model.backend().allocate_kv(model.config().n_layer, kSequences * kBlocksPerSequence,
                                          kBlockTokens, model.config().kv_dim(), format)),
          workspace_(model.backend(), model.config(), 256, 256),
          tables_(kSequences),
          lengths_(kSequences, 0) {
        for (int s = 0; s < kSequences; ++s)
            for (int b = 0; b < kBlocksPerSequence; ++b)
                tables_[s].push_back(s * kBlocksPerSequence + b);
    }

    // Appends `tokens[i]` to sequence `sequences[i]`; logits of every row (decode) or of each
    // sequence's last row (prefill).
    std::vector<float> pass(const std::vector<int>& sequences,
                            const std::vector<std::vector<std::int32_t>>& tokens, bool every_row) {
        model::Batch batch;
        for (std::size_t i = 0; i < sequences.size(); ++i) {
            const int s = sequences[i];
            batch.block_tables.emplace_back(tables_[s]);
            for (std::size_t t = 0; t < tokens[i].size(); ++t) {
                if (every_row || t + 1 == tokens[i].size())
                    batch.logits_rows.push_back(static_cast<int>(batch.tokens.size()));
                batch.tokens.push_back(tokens[i][t]);
                batch.positions.push_back(lengths_[s]++);
                batch.row_sequence.push_back(static_cast<int>(i));
            }
        }
        std::vector<float> logits(batch.logits_rows.size() *
                                  static_cast<std::size_t>(model_.config().vocab_size));
        model_.forward(batch, *kv_, workspace_, logits);
        return logits;
    }

  private:
    const model::Model& model_;
    std::unique_ptr<backend::KvStorage> kv_;
    model::Workspace workspace_;
    std::vector<std::vector<int>> tables_;
    std::vector<int> lengths_;
};

// Every pass's logits. Four prompts; six decode passes of the four (eager, captured, replayed);
// a 200-token prompt of a fifth sequence, whose prefill grows the GEMM scratch every graph reads;
// four more decode passes of the same shape, which must not replay the graph captured before.
std::vector<std::vector<float>> run_script(ScriptedPasses& script, int vocab) {
    std::uint64_t state = 7;
    auto tokens = [&](int count) {
        std::vector<std::int32_t> ids(count);
        for (auto& id : ids) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            id = static_cast<std::int32_t>((state >> 33) % static_cast<std::uint64_t>(vocab));
        }
        return ids;
    };
    const std::vector<int> four = {0, 1, 2, 3};
    std::vector<std::vector<float>> logits;
    logits.push_back(script.pass(four, {tokens(5), tokens(7), tokens(9), tokens(11)}, false));
    auto decode = [&] {
        logits.push_back(script.pass(four, {tokens(1), tokens(1), tokens(1), tokens(1)}, true));
    };
    for (int i = 0; i < 6; ++i) decode();
    logits.push_back(script.pass({4}, {tokens(200)}, false));
    for (int i = 0; i < 4; ++i) decode();
    return logits;
}

class CudaGraphs : public CudaDeviceTest {};

TEST_F(CudaGraphs, ReplayComputesExactlyWhatLaunchingEveryKernelDoes) {
    const auto dir = repository_dir() / "models" / "gpt2-brown-mini";
    for (backend::KvFormat format : {backend::KvFormat::kF32, backend::KvFormat::kF16}) {
        SCOPED_TRACE(std::string(backend::to_string(format)) + " KV cache");
        // Fresh backends: the scratch buffers start empty, so the long prefill must grow them.
        std::shared_ptr<backend::Backend> eager = backend::make_cuda_backend(0, {.graphs = false});
        std::shared_ptr<backend::Backend> graphs = backend::make_cuda_backend(0, {.graphs = true});
        auto eager_model = model::Model::load(dir, {eager, backend::WeightFormat::kAuto});
        auto graph_model = model::Model::load(dir, {graphs, backend::WeightFormat::kAuto});
        const int vocab = eager_model->config().vocab_size;
        ScriptedPasses eager_script(*eager_model, format), graph_script(*graph_model, format);
        const auto want = run_script(eager_script, vocab);
        const auto got = run_script(graph_script, vocab);

        ASSERT_EQ(got.size(), want.size());
        for (std::size_t pass = 0; pass < got.size(); ++pass) {
            ASSERT_EQ(got[pass].size(), want[pass].size());
            for (std::size_t i = 0; i < got[pass].size(); ++i)
                ASSERT_EQ(got[pass][i], want[pass][i])
                    << "pass " << pass << ", logit " << i << " (row " << i / vocab << ")";
        }
        const backend::CudaGraphStats stats = backend::cuda_graph_stats(*graphs);
        // Decode passes: 1 eager + 1 captured + 4 replayed; after the prefill moved the scratch,
        // 1 captured again (the shape is warm) + 3 replayed.
        EXPECT_EQ(stats.captures, 2u);
        EXPECT_EQ(stats.replays, 9u);
        EXPECT_EQ(stats.invalidations, 1u);
        EXPECT_EQ(stats.eager_passes, 3u) << "two prefills and the first decode pass";
        EXPECT_EQ(backend::cuda_graph_stats(*eager).replays, 0u);
        std::cout << backend::to_string(format) << " KV cache: " << stats.captures
                  << " graphs captured, " << stats.replays << " replays, " << stats.eager_passes
                  << " eager passes, " << stats.invalidations << " invalidations\n";
    }
}

}  // namespace
}  // namespace llmserve::testing
