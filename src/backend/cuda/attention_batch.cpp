#include "backend/cuda/attention_batch.h"

#include "common/error.h"

namespace llmserve::backend::cuda {

std::vector<int> pack_attention_batch(const AttentionBatch& batch, int num_blocks,
                                      int cache_block_tokens) {
    const std::size_t rows = batch.positions.size();
    if (batch.row_sequence.size() != rows)
        fail(ErrorCode::kInternal, "attention batch: {} positions but {} row sequences", rows,
             batch.row_sequence.size());
    if (batch.block_tokens != cache_block_tokens || batch.block_tokens <= 0)
        fail(ErrorCode::kInternal,
             "attention batch: {} tokens per block, but the KV cache holds {} per block",
             batch.block_tokens, cache_block_tokens);

    std::vector<int> table_start(batch.block_tables.size());
    std::size_t table_ints = 0;
    for (std::size_t s = 0; s < batch.block_tables.size(); ++s) {
        table_start[s] = static_cast<int>(table_ints);
        for (int block : batch.block_tables[s])
            if (block < 0 || block >= num_blocks)
                fail(ErrorCode::kInternal,
                     "attention batch: block table {} lists block {}, outside the cache's [0, {})",
                     s, block, num_blocks);
        table_ints += batch.block_tables[s].size();
    }

    std::vector<int> packed;
    packed.reserve(2 * rows + table_ints);
    packed.insert(packed.end(), batch.positions.begin(), batch.positions.end());
    for (std::size_t r = 0; r < rows; ++r) {
        const int sequence = batch.row_sequence[r];
        if (sequence < 0 || static_cast<std::size_t>(sequence) >= batch.block_tables.size())
            fail(ErrorCode::kInternal, "attention batch: row {} names sequence {} of {}", r,
                 sequence, batch.block_tables.size());
        const int position = batch.positions[r];
        if (position < 0)
            fail(ErrorCode::kInternal, "attention batch: row {} has negative position {}", r,
                 position);
        const std::size_t blocks_needed =
            static_cast<std::size_t>(position / batch.block_tokens) + 1;
        if (blocks_needed > batch.block_tables[sequence].size())
            fail(ErrorCode::kInternal,
                 "attention batch: row {} at position {} needs {} blocks of {} tokens, but its "
                 "table (sequence {}) has {}",
                 r, position, blocks_needed, batch.block_tokens, sequence,
                 batch.block_tables[sequence].size());
        packed.push_back(table_start[sequence]);
    }
    for (const auto& table : batch.block_tables)
        packed.insert(packed.end(), table.begin(), table.end());
    return packed;
}

HeadLayout attention_heads(MatrixView qkv, const AttentionParams& params, int kv_dim,
                           MatrixView out) {
    check_attention(qkv, params, kv_dim, out);
    if (params.head_dim > kMaxHeadDim)
        fail(ErrorCode::kUnsupported,
             "the cuda backend's attention handles head dimensions up to {}; this model has {}",
             kMaxHeadDim, params.head_dim);
    return {params.n_head, params.n_kv_head, params.head_dim};
}

std::optional<QkTransform> qk_transform(const AttentionParams& params) {
    const RotaryParams& rotary = params.rotary;
    if (params.q_norm == nullptr && rotary.inv_freq == nullptr) return std::nullopt;
    QkTransform transform;
    if (params.q_norm != nullptr) {
        transform.q_norm = params.q_norm->data();
        transform.k_norm = params.k_norm->data();
        transform.norm_eps = params.norm_eps;
    }
    if (rotary.inv_freq != nullptr) {
        transform.inv_freq = rotary.inv_freq->data();
        transform.rotary_dim = rotary.rotary_dim;
        transform.attention_factor = rotary.attention_factor;
    }
    return transform;
}

}  // namespace llmserve::backend::cuda
