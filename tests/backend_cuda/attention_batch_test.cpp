// Host-side addressing of the paged KV cache and of the heads of a qkv row, shared with the kernels
// (runs without a GPU): the packed batch must lead every row to exactly the blocks its table
// lists, bad batches and shapes must be refused before a kernel could read out of bounds, every
// query head must read the KV head and the window transformers gives it, and AttentionParams must
// reach the q/k transform kernel as given.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <set>

#include "backend/cuda/attention_batch.h"
#include "backend/cuda/paged_layout.h"
#include "common/error.h"

namespace llmserve::backend::cuda {
namespace {

// A random batch: `sequences` sequences with block tables drawn without replacement from a pool of
// `num_blocks`, each contributing a run of consecutive positions (a prefill chunk or one decode
// token) that ends inside its table.
struct RandomBatch {
    std::vector<std::vector<int>> tables;
    std::vector<std::span<const int>> table_spans;
    std::vector<int> positions, row_sequence;
    AttentionBatch view(int block_tokens) const {
        return {positions, row_sequence, table_spans, block_tokens};
    }
};

RandomBatch random_batch(std::mt19937& rng, int sequences, int num_blocks, int block_tokens) {
    RandomBatch batch;
    std::vector<int> pool(num_blocks);
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), rng);
    auto next_block = pool.begin();
    for (int s = 0; s < sequences; ++s) {
        const int blocks = std::uniform_int_distribution<int>(1, 4)(rng);
        batch.tables.emplace_back(next_block, next_block + blocks);
        next_block += blocks;
        const int capacity = blocks * block_tokens;
        const int end = std::uniform_int_distribution<int>(1, capacity)(rng);
        const int start = std::uniform_int_distribution<int>(0, end - 1)(rng);
        for (int p = start; p < end; ++p) {
            batch.positions.push_back(p);
            batch.row_sequence.push_back(s);
        }
    }
    for (const auto& table : batch.tables) batch.table_spans.emplace_back(table);
    return batch;
}

TEST(AttentionBatchPacking, EveryCachedTokenResolvesToItsTableEntry) {
    std::mt19937 rng(7);
    for (int block_tokens : {1, 5, 16}) {
        for (int trial = 0; trial < 20; ++trial) {
            const int sequences = std::uniform_int_distribution<int>(1, 6)(rng);
            const int num_blocks = 4 * sequences + 3;
            const RandomBatch batch = random_batch(rng, sequences, num_blocks, block_tokens);
            const std::vector<int> packed =
                pack_attention_batch(batch.view(block_tokens), num_blocks, block_tokens);
            const int rows = static_cast<int>(batch.positions.size());
            const PagedRows view{packed.data(), rows, block_tokens};
            for (int r = 0; r < rows; ++r) {
                ASSERT_EQ(view.position(r), batch.positions[r]);
                const auto& table = batch.tables[batch.row_sequence[r]];
                for (int t = 0; t <= batch.positions[r]; ++t) {
                    ASSERT_EQ(view.block_of(r, t), table[t / block_tokens])
                        << "row " << r << " token " << t << " block_tokens " << block_tokens;
                    ASSERT_EQ(view.offset_of(t), t % block_tokens);
                }
            }
        }
    }
}

TEST(AttentionBatchPacking, KvSlotsTileTheStorageWithoutOverlap) {
    const KvLayout layout{5, 3, 4};
    const int layers = 2;
    std::set<std::size_t> starts;
    for (int layer = 0; layer < layers; ++layer)
        for (int kind = 0; kind < 2; ++kind)
            for (int block = 0; block < layout.blocks; ++block)
                for (int offset = 0; offset < layout.block_tokens; ++offset) {
                    const std::size_t start = layout.slot(layer, kind, block, offset);
                    EXPECT_EQ(start % layout.kv_dim, 0u);
                    EXPECT_LE(start + layout.kv_dim, layout.elements(layers));
                    starts.insert(start);
                }
    EXPECT_EQ(starts.size() * layout.kv_dim, layout.elements(layers));
}

// Expects pack_attention_batch to throw kInternal with `fragment` in the message.
void expect_refused(const AttentionBatch& batch, int num_blocks, int block_tokens,
                    const std::string& fragment) {
    try {
        pack_attention_batch(batch, num_blocks, block_tokens);
        ADD_FAILURE() << "accepted a batch that should fail with '" << fragment << "'";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kInternal);
        EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
    }
}

TEST(AttentionBatchPacking, RefusesInconsistentBatches) {
    const std::vector<int> table = {3, 1};
    const std::vector<std::span<const int>> tables = {table};
    const std::vector<int> positions = {0, 17}, sequences = {0, 0};
    const std::vector<int> one_sequence = {0};
    const std::vector<int> bad_sequence = {0, 1};
    const std::vector<int> beyond_table = {0, 32};
    const std::vector<int> negative = {-1, 3};

    EXPECT_NO_THROW(pack_attention_batch({positions, sequences, tables, 16}, 4, 16));
    expect_refused({positions, one_sequence, tables, 16}, 4, 16, "row sequences");
    expect_refused({positions, sequences, tables, 8}, 4, 16, "per block");
    expect_refused({positions, sequences, tables, 16}, 3, 16, "block 3");
    expect_refused({positions, bad_sequence, tables, 16}, 4, 16, "names sequence 1");
    expect_refused({beyond_table, sequences, tables, 16}, 4, 16, "position 32");
    expect_refused({negative, sequences, tables, 16}, 4, 16, "negative position");
}

// Multi-head (GPT-2), grouped-query (Llama, Qwen2), multi-query, and a head_dim unrelated to the
// residual width (Qwen3).
const HeadLayout kHeadShapes[] = {{12, 12, 64}, {14, 2, 64}, {8, 1, 128}, {4, 2, 32}, {6, 3, 40}};

TEST(HeadLayout, QueryKeyAndValueHeadsTileTheQkvRowOnce) {
    for (const HeadLayout& heads : kHeadShapes) {
        SCOPED_TRACE(
            fmt::format("H {}, KV {}, D {}", heads.n_head, heads.n_kv_head, heads.head_dim));
        const int D = heads.head_dim;
        EXPECT_EQ(heads.row_width(), (heads.n_head + 2 * heads.n_kv_head) * D);
        EXPECT_EQ(heads.out_width(), heads.n_head * D);
        EXPECT_EQ(heads.kv_dim(), heads.n_kv_head * D);
        std::vector<int> owners(heads.row_width(), 0);
        auto claim = [&](int offset) {
            for (int d = 0; d < D; ++d) ++owners.at(offset + d);
        };
        for (int h = 0; h < heads.n_head; ++h) claim(heads.query(h));
        for (int j = 0; j < heads.n_kv_head; ++j) {
            claim(heads.key(j));
            claim(heads.value(j));
        }
        EXPECT_TRUE(std::ranges::all_of(owners, [](int n) { return n == 1; }));
        // Keys and values are contiguous (write_kv copies kv_dim floats from key(0), value(0)),
        // and the query heads followed by the key heads are the H + KV heads the q/k transform
        // walks (head i at i * D).
        EXPECT_EQ(heads.key(0), heads.out_width());
        EXPECT_EQ(heads.value(0), heads.key(0) + heads.kv_dim());
        for (int j = 0; j < heads.n_kv_head; ++j) EXPECT_EQ(heads.key(j), (heads.n_head + j) * D);
    }
}

// transformers' repeat_kv repeats each KV head for `group` consecutive query heads.
TEST(HeadLayout, QueryHeadsShareTheirKvHeadInConsecutiveGroups) {
    for (const HeadLayout& heads : kHeadShapes) {
        const int group = heads.n_head / heads.n_kv_head;
        std::vector<int> readers(heads.n_kv_head, 0);
        for (int h = 0; h < heads.n_head; ++h) {
            const int kv = heads.kv_head_of(h);
            ASSERT_GE(kv, 0);
            ASSERT_LT(kv, heads.n_kv_head);
            if (h > 0) {
                EXPECT_GE(kv, heads.kv_head_of(h - 1));
            }
            ++readers[kv];
        }
        EXPECT_TRUE(std::ranges::all_of(readers, [&](int n) { return n == group; }));
        if (heads.n_kv_head == heads.n_head) {
            for (int h = 0; h < heads.n_head; ++h) EXPECT_EQ(heads.kv_head_of(h), h);
        }
    }
}

// The first attended key against transformers' sliding-window mask written out: a query at q sees
// key k when k <= q and (no window, or k > q - window).
TEST(HeadLayout, FirstKeyIsTheFirstKeyTheSlidingWindowMaskAllows) {
    for (int window : {0, 1, 2, 7, 32, 4096})
        for (int position = 0; position < 200; ++position) {
            int first = -1;
            for (int key = 0; key <= position && first < 0; ++key)
                if (window == 0 || key > position - window) first = key;
            ASSERT_EQ(first_key(position, window), first)
                << "window " << window << ", position " << position;
        }
}

struct HostBuffers {
    std::shared_ptr<Backend> cpu = make_cpu_backend(1);
    std::unique_ptr<DeviceBuffer> qkv = cpu->allocate(8 * 16), out = cpu->allocate(8 * 16);
    std::unique_ptr<DeviceBuffer> q_norm = cpu->allocate(16), k_norm = cpu->allocate(16);
    std::unique_ptr<DeviceBuffer> inv_freq = cpu->allocate(8);
};

TEST(AttentionArguments, HeadsComeFromTheParamsAndWideHeadsAreRefused) {
    HostBuffers b;
    const AttentionParams gqa{
        .n_head = 4, .n_kv_head = 2, .head_dim = 16, .scale = 0.25f, .rotary = {}};
    const HeadLayout heads =
        attention_heads({b.qkv->data(), 1, 8 * 16}, gqa, 2 * 16, {b.out->data(), 1, 4 * 16});
    EXPECT_EQ(heads.n_head, 4);
    EXPECT_EQ(heads.n_kv_head, 2);
    EXPECT_EQ(heads.head_dim, 16);
    // Shapes that do not fit are check_attention's kInternal errors.
    EXPECT_THROW(
        attention_heads({b.qkv->data(), 1, 8 * 16}, gqa, 4 * 16, {b.out->data(), 1, 4 * 16}),
        Error);
    // One 512-dimension head (qkv of 3 such heads): valid for the interface, too wide here.
    auto wide_qkv = b.cpu->allocate(3 * 512), wide_out = b.cpu->allocate(512);
    const AttentionParams wide{
        .n_head = 1, .n_kv_head = 1, .head_dim = 512, .scale = 1.0f, .rotary = {}};
    try {
        attention_heads({wide_qkv->data(), 1, 3 * 512}, wide, 512, {wide_out->data(), 1, 512});
        ADD_FAILURE() << "a head dimension of 512 was accepted";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kUnsupported);
        EXPECT_NE(std::string(error.what()).find("512"), std::string::npos) << error.what();
    }
}

TEST(AttentionArguments, TheQkTransformCarriesExactlyWhatTheParamsAskFor) {
    HostBuffers b;
    AttentionParams params{
        .n_head = 4, .n_kv_head = 2, .head_dim = 16, .scale = 0.25f, .rotary = {}};
    EXPECT_FALSE(qk_transform(params).has_value()) << "GPT-2: q and k are used as they are";

    params.rotary = {b.inv_freq.get(), 12, 1.25f};  // partial rotary, yarn-style factor
    auto rotary_only = qk_transform(params);
    ASSERT_TRUE(rotary_only.has_value());
    EXPECT_EQ(rotary_only->inv_freq, b.inv_freq->data());
    EXPECT_EQ(rotary_only->rotary_dim, 12);
    EXPECT_EQ(rotary_only->attention_factor, 1.25f);
    EXPECT_EQ(rotary_only->q_norm, nullptr);
    EXPECT_EQ(rotary_only->k_norm, nullptr);

    params.q_norm = b.q_norm.get();
    params.k_norm = b.k_norm.get();
    params.norm_eps = 1e-5f;
    auto both = qk_transform(params);
    ASSERT_TRUE(both.has_value());
    EXPECT_EQ(both->q_norm, b.q_norm->data());
    EXPECT_EQ(both->k_norm, b.k_norm->data());
    EXPECT_EQ(both->norm_eps, 1e-5f);
    EXPECT_EQ(both->inv_freq, b.inv_freq->data());

    params.rotary = {};
    auto norm_only = qk_transform(params);
    ASSERT_TRUE(norm_only.has_value());
    EXPECT_EQ(norm_only->inv_freq, nullptr);
    EXPECT_EQ(norm_only->rotary_dim, 0);
    EXPECT_EQ(norm_only->q_norm, b.q_norm->data());
}

}  // namespace
}  // namespace llmserve::backend::cuda
