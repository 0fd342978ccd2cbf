// Host side of the paged attention: flattens an AttentionBatch (host spans) into the int array that
// PagedRows reads on the device, validating it first so that a kernel never reads out of bounds,
// and turns AttentionParams into the kernels' arguments.
#pragma once

#include <optional>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/paged_layout.h"

namespace llmserve::backend::cuda {

// Packs `batch` in the layout PagedRows documents. Throws Error(kInternal) naming the row or table
// when the arrays disagree in length, a row's sequence has no table, a position is negative or
// beyond its table, a block id is outside [0, num_blocks), or block_tokens differs from the
// cache's.
std::vector<int> pack_attention_batch(const AttentionBatch& batch, int num_blocks,
                                      int cache_block_tokens);

// The heads of `qkv` after check_attention(qkv, params, kv_dim, out); throws Error(kUnsupported)
// naming the head dimension when it exceeds kMaxHeadDim.
HeadLayout attention_heads(MatrixView qkv, const AttentionParams& params, int kv_dim,
                           MatrixView out);

// The q/k transform `params` asks for (device pointers of its norm weights and inverse
// frequencies), or nullopt when q and k are used as they are.
std::optional<QkTransform> qk_transform(const AttentionParams& params);

}  // namespace llmserve::backend::cuda
