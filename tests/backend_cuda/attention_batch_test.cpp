// Host-side addressing of the paged KV cache, shared with the kernels (runs without a GPU): the
// packed batch must lead every row to exactly the blocks its table lists, and bad batches must be
// refused before a kernel could read out of bounds.
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
                    EXPECT_EQ(start % layout.n_embd, 0u);
                    EXPECT_LE(start + layout.n_embd, layout.elements(layers));
                    starts.insert(start);
                }
    EXPECT_EQ(starts.size() * layout.n_embd, layout.elements(layers));
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

}  // namespace
}  // namespace llmserve::backend::cuda
