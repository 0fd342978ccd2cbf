// Plain views that both the host and the kernels use to address the paged KV cache, so the
// addressing is written once (and unit-tested on the CPU).
#pragma once

#include <cstddef>

#if defined(__CUDACC__)
#define LLMSERVE_HOST_DEVICE __host__ __device__
#else
#define LLMSERVE_HOST_DEVICE
#endif

namespace llmserve::backend::cuda {

// Device K/V storage: per layer, keys then values, each [blocks, block_tokens, n_embd] elements
// (f32 or f16, as the cache was allocated; indices here count elements).
struct KvLayout {
    int blocks = 0;
    int block_tokens = 0;
    int n_embd = 0;

    // Index (in elements) of token `offset` of `block` in `layer`; kind 0 = keys, 1 = values.
    LLMSERVE_HOST_DEVICE std::size_t slot(int layer, int kind, int block, int offset) const {
        const std::size_t token =
            ((static_cast<std::size_t>(layer) * 2 + kind) * blocks + block) * block_tokens + offset;
        return token * n_embd;
    }
    LLMSERVE_HOST_DEVICE std::size_t elements(int layers) const {
        return static_cast<std::size_t>(layers) * 2 * blocks * block_tokens * n_embd;
    }
};

// One attention batch packed into a single int array (see attention_batch.h for how it is built):
//   [0, rows)              position of each row
//   [rows, 2 rows)         where the row's block table starts in the tables section
//   [2 rows, ...)          every sequence's block table, concatenated
struct PagedRows {
    const int* packed = nullptr;
    int rows = 0;
    int block_tokens = 0;

    LLMSERVE_HOST_DEVICE int position(int row) const { return packed[row]; }
    // The KV block holding token `position` of the row's sequence.
    LLMSERVE_HOST_DEVICE int block_of(int row, int position) const {
        return packed[2 * rows + packed[rows + row] + position / block_tokens];
    }
    LLMSERVE_HOST_DEVICE int offset_of(int position) const { return position % block_tokens; }
};

}  // namespace llmserve::backend::cuda
