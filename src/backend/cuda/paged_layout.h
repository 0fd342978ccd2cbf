// Plain views that both the host and the kernels use to address the paged KV cache and the heads
// of a qkv row, and the arguments of the q/k transform, so the addressing is written once (and
// unit-tested on the CPU).
#pragma once

#include <cstddef>

#if defined(__CUDACC__)
#define LLMSERVE_HOST_DEVICE __host__ __device__
#else
#define LLMSERVE_HOST_DEVICE
#endif

namespace llmserve::backend::cuda {

// The largest head dimension the attention kernel handles (each lane keeps head_dim / 32 values).
inline constexpr int kMaxHeadDim = 256;

// Device K/V storage: per layer, keys then values, each [blocks, block_tokens, kv_dim] elements
// (f32 or f16, as the cache was allocated; indices here count elements). kv_dim = KV heads *
// head_dim (n_embd for GPT-2).
struct KvLayout {
    int blocks = 0;
    int block_tokens = 0;
    int kv_dim = 0;

    // Index (in elements) of token `offset` of `block` in `layer`; kind 0 = keys, 1 = values.
    LLMSERVE_HOST_DEVICE std::size_t slot(int layer, int kind, int block, int offset) const {
        const std::size_t token =
            ((static_cast<std::size_t>(layer) * 2 + kind) * blocks + block) * block_tokens + offset;
        return token * kv_dim;
    }
    LLMSERVE_HOST_DEVICE std::size_t elements(int layers) const {
        return static_cast<std::size_t>(layers) * 2 * blocks * block_tokens * kv_dim;
    }
};

// The heads of one qkv row, [(H + 2 KV) D]: H query heads, then KV key heads, then KV value heads,
// each of D floats. Query head h reads key/value head h / (H / KV) (transformers' repeat_kv).
struct HeadLayout {
    int n_head = 0;     // H
    int n_kv_head = 0;  // KV, a divisor of H
    int head_dim = 0;   // D

    LLMSERVE_HOST_DEVICE int row_width() const { return (n_head + 2 * n_kv_head) * head_dim; }
    LLMSERVE_HOST_DEVICE int out_width() const { return n_head * head_dim; }
    LLMSERVE_HOST_DEVICE int kv_dim() const { return n_kv_head * head_dim; }
    LLMSERVE_HOST_DEVICE int kv_head_of(int head) const { return head / (n_head / n_kv_head); }
    // Offsets (floats) in a qkv row of query head h, and of key and value head j.
    LLMSERVE_HOST_DEVICE int query(int head) const { return head * head_dim; }
    LLMSERVE_HOST_DEVICE int key(int kv_head) const { return (n_head + kv_head) * head_dim; }
    LLMSERVE_HOST_DEVICE int value(int kv_head) const {
        return (n_head + n_kv_head + kv_head) * head_dim;
    }
};

// What happens to every query and key head of a qkv row before attention (AttentionParams with
// device pointers): RMSNorm with q_norm / k_norm when they are set, then the rotary embedding of
// the first rotary_dim dimensions when inv_freq is set.
struct QkTransform {
    const float* q_norm = nullptr;  // [D]
    const float* k_norm = nullptr;  // [D]
    float norm_eps = 0.0f;
    const float* inv_freq = nullptr;  // [rotary_dim / 2]
    int rotary_dim = 0;
    float attention_factor = 1.0f;
};

// The first key position a query at `position` attends to: (position - window, position] under a
// sliding window (transformers' mask: key > query - window), [0, position] when window is 0.
LLMSERVE_HOST_DEVICE inline int first_key(int position, int window) {
    const int first = position - window + 1;
    return window > 0 && first > 0 ? first : 0;
}

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
