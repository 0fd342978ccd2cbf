// Host side of the paged attention: flattens an AttentionBatch (host spans) into the int array that
// PagedRows reads on the device, validating it first so that a kernel never reads out of bounds.
#pragma once

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

}  // namespace llmserve::backend::cuda
