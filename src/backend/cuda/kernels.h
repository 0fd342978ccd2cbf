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

// y = x / sqrt(mean(x²) + eps) * gamma per row, in float32.          x, y: [rows, cols] (may alias)
void launch_rms_norm(const float* x, const float* gamma, float eps, int rows, int cols, float* y,
                     cudaStream_t stream);

// out[r, i] = activation(gate[r, i]) * up[r, i].   gate_up: [rows, 2 width] (gate | up)
//                                                   out: [rows, width]
void launch_gated_activation(const float* gate_up, Activation kind, int rows, int width, float* out,
                             cudaStream_t stream);

// Applies `transform` in place to the H query and KV key heads of each row, at the row's
// position (rotate_half: dimension i < R/2 pairs with i + R/2; the angle is float32(position *
// inv_freq[i]); cos and sin are multiplied by attention_factor).
//                                                       qkv: [rows.rows, heads.row_width()]
void launch_transform_qk(float* qkv, PagedRows rows, HeadLayout heads, const QkTransform& transform,
                         cudaStream_t stream);

// Writes each row's k and v (all KV heads) into the cache (elements of `format`) at the row's
// position; layout.kv_dim == heads.kv_dim().            qkv: [rows.rows, heads.row_width()]
void launch_write_kv(const float* qkv, PagedRows rows, HeadLayout heads, KvLayout layout, int layer,
                     KvFormat format, void* kv, cudaStream_t stream);

// Causal attention of each row's query heads over its sequence's cached positions
// [first_key(position, window), position], softmax in float32; query head h reads KV head
// heads.kv_head_of(h). Needs head_dim <= kMaxHeadDim.
//                        qkv: [rows.rows, heads.row_width()]   out: [rows.rows, heads.out_width()]
void launch_paged_attention(const float* qkv, PagedRows rows, const void* kv, KvFormat format,
                            KvLayout layout, int layer, HeadLayout heads, int window, float scale,
                            float* out, cudaStream_t stream);

}  // namespace llmserve::backend::cuda
