// Kernel launchers of the CUDA backend. Each one enqueues its work on `stream` and returns at once;
// the caller checks cudaGetLastError() after it and sees execution errors at the next
// synchronisation. Matrices are row-major and contiguous, sizes are element counts, pointers are
// device memory.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "backend/backend.h"
#include "backend/cuda/paged_layout.h"
#include "common/dtype.h"

namespace llmserve::backend::cuda {

// The largest head dimension the attention kernel handles (each lane keeps head_dim / 32 values).
inline constexpr int kMaxHeadDim = 256;

// dst[i] = src[i] converted from `from` to `to` (round to nearest even).
void launch_convert(DType from, const void* src, DType to, void* dst, std::size_t count,
                    cudaStream_t stream);

// out[r] = table[ids[r]] as float32.         table: [*, cols] of `type`   ids: [rows]   out: [rows,
// cols]
void launch_embedding(DType type, const void* table, int cols, const int* ids, int rows, float* out,
                      cudaStream_t stream);

// out[i] = x[rows[i]].                                 x: [*, cols]   rows: [count]   out: [count,
// cols]
void launch_gather_rows(const float* x, int cols, const int* rows, int count, float* out,
                        cudaStream_t stream);

// y[r, c] = activation(y[r, c] + bias[c]): bias may be null, activation applies when
// `activate` is set.                                               y: [rows, cols]   bias: [cols]
void launch_bias_activation(float* y, const float* bias, bool activate, Activation kind, int rows,
                            int cols, cudaStream_t stream);

// x[i] += y[i].
void launch_add(float* x, const float* y, std::size_t count, cudaStream_t stream);

// y = (x - mean) / sqrt(var + eps) * gamma + beta per row, in float32.   x, y: [rows, cols] (may
// alias)
void launch_layer_norm(const float* x, const float* gamma, const float* beta, float eps, int rows,
                       int cols, float* y, cudaStream_t stream);

// Writes each row's k and v into the cache (elements of `format`) at the row's position.
//                                                                    qkv: [rows.rows, 3 n_embd]
void launch_write_kv(const float* qkv, PagedRows rows, KvLayout layout, int layer, KvFormat format,
                     void* kv, cudaStream_t stream);

// Causal attention of each row over its sequence's cached positions [0, position], softmax in
// float32. Needs n_embd = n_head * head_dim with head_dim <= kMaxHeadDim.
//                                     qkv: [rows.rows, 3 n_embd]   out: [rows.rows, n_embd]
void launch_paged_attention(const float* qkv, PagedRows rows, const void* kv, KvFormat format,
                            KvLayout layout, int layer, int n_head, float scale, float* out,
                            cudaStream_t stream);

}  // namespace llmserve::backend::cuda
