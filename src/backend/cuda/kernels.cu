// Every kernel of the CUDA backend, in one file to keep nvcc time low. Activations are float32;
// weights may be f16/bf16/f32 (read through to_float). Reductions and softmax run in float32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/kernels.h"

namespace llmserve::backend::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxGridBlocks = 4096;  // grid-stride loops cover the rest
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

int elementwise_blocks(std::size_t count) {
    const std::size_t blocks = (count + kThreads - 1) / kThreads;
    return static_cast<int>(std::clamp<std::size_t>(blocks, 1, kMaxGridBlocks));
}

__device__ __forceinline__ float to_float(float v) {
    return v;
}
__device__ __forceinline__ float to_float(__half v) {
    return __half2float(v);
}
__device__ __forceinline__ float to_float(__nv_bfloat16 v) {
    return __bfloat162float(v);
}

__device__ __forceinline__ void store(float* p, float v) {
    *p = v;
}
__device__ __forceinline__ void store(__half* p, float v) {
    *p = __float2half_rn(v);
}
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) {
    *p = __float2bfloat16_rn(v);
}

__device__ __forceinline__ std::size_t global_thread() {
    return static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::size_t grid_threads() {
    return static_cast<std::size_t>(gridDim.x) * blockDim.x;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = kWarp / 2; offset > 0; offset /= 2)
        v += __shfl_xor_sync(kFullMask, v, offset);
    return v;
}

// Sum of `v` over the block, returned to every thread. `scratch` holds one float per warp; the
// trailing barrier lets the caller reuse it at once.
__device__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x % kWarp;
    const int warp = threadIdx.x / kWarp;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        const int warps = (blockDim.x + kWarp - 1) / kWarp;
        v = warp_sum(lane < warps ? scratch[lane] : 0.0f);
        if (lane == 0) scratch[0] = v;
    }
    __syncthreads();
    const float total = scratch[0];
    __syncthreads();
    return total;
}

template <typename From, typename To>
__global__ void convert_kernel(const From* src, To* dst, std::size_t count) {
    for (std::size_t i = global_thread(); i < count; i += grid_threads())
        store(dst + i, to_float(src[i]));
}

template <typename From>
void convert_from(const From* src, DType to, void* dst, std::size_t count, cudaStream_t stream) {
    const int blocks = elementwise_blocks(count);
    switch (to) {
        case DType::kF32:
            convert_kernel<<<blocks, kThreads, 0, stream>>>(src, static_cast<float*>(dst), count);
            return;
        case DType::kF16:
            convert_kernel<<<blocks, kThreads, 0, stream>>>(src, static_cast<__half*>(dst), count);
            return;
        case DType::kBF16:
            convert_kernel<<<blocks, kThreads, 0, stream>>>(src, static_cast<__nv_bfloat16*>(dst),
                                                            count);
            return;
        default:  // quantized types never reach the GPU (the backend refuses them at upload)
            return;
    }
}

// One block per row.
template <typename T>
__global__ void embedding_kernel(const T* table, int cols, const int* ids, float* out) {
    const T* source = table + static_cast<std::size_t>(ids[blockIdx.x]) * cols;
    float* target = out + static_cast<std::size_t>(blockIdx.x) * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) target[c] = to_float(source[c]);
}

__global__ void add_kernel(float* x, const float* y, std::size_t count) {
    for (std::size_t i = global_thread(); i < count; i += grid_threads()) x[i] += y[i];
}

__device__ float apply_activation(Activation kind, float x) {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    switch (kind) {
        case Activation::kGeluNew:
            return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
        case Activation::kGeluFast:
            return 0.5f * x * (1.0f + tanhf(x * kSqrt2OverPi * (1.0f + 0.044715f * x * x)));
        case Activation::kGelu:
            return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
        case Activation::kRelu:
            return x > 0.0f ? x : 0.0f;
        case Activation::kSilu:
            return x / (1.0f + expf(-x));
    }
    return x;
}

__global__ void bias_activation_kernel(float* y, const float* bias, bool activate, Activation kind,
                                       int cols, std::size_t count) {
    for (std::size_t i = global_thread(); i < count; i += grid_threads()) {
        float value = y[i];
        if (bias != nullptr) value += bias[i % cols];
        y[i] = activate ? apply_activation(kind, value) : value;
    }
}

// One block per row; two passes (mean, then variance about the mean) like the CPU backend. Each
// thread reads and writes only its own columns after both reductions, so x may alias y.
__global__ void layer_norm_kernel(const float* x, const float* gamma, const float* beta, float eps,
                                  int cols, float* y) {
    __shared__ float scratch[kThreads / kWarp];
    const float* in = x + static_cast<std::size_t>(blockIdx.x) * cols;
    float* out = y + static_cast<std::size_t>(blockIdx.x) * cols;
    float sum = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) sum += in[c];
    const float mean = block_sum(sum, scratch) / cols;
    float squares = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float d = in[c] - mean;
        squares += d * d;
    }
    const float inv_std = 1.0f / sqrtf(block_sum(squares, scratch) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        out[c] = (in[c] - mean) * inv_std * gamma[c] + beta[c];
}

// One block per row, like layer_norm_kernel: the sum of squares first, then each thread scales its
// own columns (so x may alias y).
__global__ void rms_norm_kernel(const float* x, const float* gamma, float eps, int cols, float* y) {
    __shared__ float scratch[kThreads / kWarp];
    const float* in = x + static_cast<std::size_t>(blockIdx.x) * cols;
    float* out = y + static_cast<std::size_t>(blockIdx.x) * cols;
    float squares = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) squares += in[c] * in[c];
    const float inverse = 1.0f / sqrtf(block_sum(squares, scratch) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out[c] = gamma[c] * (in[c] * inverse);
}

//                                     gate_up: [rows, 2 width] (gate | up)   out: [rows, width]
__global__ void gated_activation_kernel(const float* gate_up, Activation kind, int width,
                                        std::size_t count, float* out) {
    for (std::size_t i = global_thread(); i < count; i += grid_threads()) {
        const std::size_t row = i / width, column = i % width;
        const float* gate = gate_up + row * 2 * width;
        out[i] = apply_activation(kind, gate[column]) * gate[width + column];
    }
}

constexpr int kTransformThreads = 64;

// One block per (row, head of the H query and KV key heads, which are adjacent in the row). Every
// element of the head is read and written by one thread: pair i < R/2 (dimensions i and i + R/2)
// by thread i mod blockDim, the dimensions past R likewise; the RMSNorm's sum of squares is
// reduced over the block before anything is written.           qkv: [rows.rows, row_width]
__global__ void __launch_bounds__(kTransformThreads)
    transform_qk_kernel(float* qkv, PagedRows rows, HeadLayout heads, QkTransform t) {
    __shared__ float scratch[kTransformThreads / kWarp];
    const int row = blockIdx.x;
    const int head = blockIdx.y;  // < H: a query head; else key head head - H
    const int dims = heads.head_dim;
    float* x = qkv + static_cast<std::size_t>(row) * heads.row_width() + head * dims;

    float inverse = 1.0f;
    const float* gamma = head < heads.n_head ? t.q_norm : t.k_norm;
    if (gamma != nullptr) {
        float squares = 0.0f;
        for (int d = threadIdx.x; d < dims; d += blockDim.x) squares += x[d] * x[d];
        inverse = 1.0f / sqrtf(block_sum(squares, scratch) / dims + t.norm_eps);
    }
    auto normalised = [&](int d) { return gamma != nullptr ? gamma[d] * (x[d] * inverse) : x[d]; };

    const int half = t.inv_freq != nullptr ? t.rotary_dim / 2 : 0;
    const auto position = static_cast<float>(rows.position(row));
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float sine, cosine;
        sincosf(position * t.inv_freq[i], &sine, &cosine);
        cosine *= t.attention_factor;
        sine *= t.attention_factor;
        const float first = normalised(i), second = normalised(i + half);
        x[i] = first * cosine - second * sine;
        x[i + half] = second * cosine + first * sine;
    }
    if (gamma != nullptr)
        for (int d = 2 * half + threadIdx.x; d < dims; d += blockDim.x) x[d] = normalised(d);
}

// One block per row: copies its keys and values (every KV head) into the cache.
template <typename T>
__global__ void write_kv_kernel(const float* qkv, PagedRows rows, HeadLayout heads, KvLayout layout,
                                int layer, T* kv) {
    const int row = blockIdx.x;
    const int position = rows.position(row);
    const int block = rows.block_of(row, position);
    const int offset = rows.offset_of(position);
    const float* source = qkv + static_cast<std::size_t>(row) * heads.row_width();
    const float* k = source + heads.key(0);
    const float* v = source + heads.value(0);
    T* keys = kv + layout.slot(layer, 0, block, offset);
    T* values = kv + layout.slot(layer, 1, block, offset);
    for (int c = threadIdx.x; c < layout.kv_dim; c += blockDim.x) {
        store(keys + c, k[c]);
        store(values + c, v[c]);
    }
}

constexpr int kAttentionWarps = 4;
constexpr int kDimsPerLane = kMaxHeadDim / kWarp;

// One block per (row, query head), reading the head's KV head. Each warp walks every
// kAttentionWarps-th cached token of the row's window with an online softmax (running max,
// running sum, running weighted values); lane l holds dimensions l, l + 32, ... of q and of the
// accumulator (indexed only in unrolled loops so they stay in registers). The warps' partial
// results are then merged through shared memory.
template <typename T>
__global__ void __launch_bounds__(kAttentionWarps* kWarp)
    paged_attention_kernel(const float* qkv, PagedRows rows, const T* kv, KvLayout layout,
                           int layer, HeadLayout heads, int window, float scale, float* out) {
    __shared__ float warp_max[kAttentionWarps];
    __shared__ float warp_total[kAttentionWarps];
    __shared__ float warp_values[kAttentionWarps][kMaxHeadDim];

    const int row = blockIdx.x;
    const int head = blockIdx.y;
    const int lane = threadIdx.x % kWarp;
    const int warp = threadIdx.x / kWarp;
    const int head_dim = heads.head_dim;
    const int kv_offset = heads.kv_head_of(head) * head_dim;  // within a cached token
    const float* q = qkv + static_cast<std::size_t>(row) * heads.row_width() + heads.query(head);

    float q_lane[kDimsPerLane];
    float acc[kDimsPerLane];
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + i * kWarp;
        q_lane[i] = d < head_dim ? q[d] : 0.0f;
        acc[i] = 0.0f;
    }

    const int position = rows.position(row);
    float running_max = -INFINITY;
    float running_total = 0.0f;
    for (int t = first_key(position, window) + warp; t <= position; t += kAttentionWarps) {
        const int block = rows.block_of(row, t);
        const int offset = rows.offset_of(t);
        const T* k = kv + layout.slot(layer, 0, block, offset) + kv_offset;
        const T* v = kv + layout.slot(layer, 1, block, offset) + kv_offset;
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) {
            const int d = lane + i * kWarp;
            if (d < head_dim) dot += q_lane[i] * to_float(k[d]);
        }
        const float score = warp_sum(dot) * scale;
        const float new_max = fmaxf(running_max, score);
        const float correction = expf(running_max - new_max);  // 0 on the first token
        const float weight = expf(score - new_max);
        running_total = running_total * correction + weight;
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) {
            const int d = lane + i * kWarp;
            if (d < head_dim) acc[i] = acc[i] * correction + weight * to_float(v[d]);
        }
        running_max = new_max;
    }

    if (lane == 0) {
        warp_max[warp] = running_max;
        warp_total[warp] = running_total;
    }
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + i * kWarp;
        if (d < head_dim) warp_values[warp][d] = acc[i];
    }
    __syncthreads();

    // Warps that saw no token (fewer keys than kAttentionWarps) have max -inf and contribute
    // nothing.
    float max_score = -INFINITY;
    for (int w = 0; w < kAttentionWarps; ++w) max_score = fmaxf(max_score, warp_max[w]);
    float warp_scale[kAttentionWarps];
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kAttentionWarps; ++w) {
        warp_scale[w] = warp_max[w] == -INFINITY ? 0.0f : expf(warp_max[w] - max_score);
        total += warp_total[w] * warp_scale[w];
    }
    float* o = out + static_cast<std::size_t>(row) * heads.out_width() + heads.query(head);
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float value = 0.0f;
#pragma unroll
        for (int w = 0; w < kAttentionWarps; ++w) value += warp_values[w][d] * warp_scale[w];
        o[d] = value / total;
    }
}

}  // namespace

void launch_convert(DType from, const void* src, DType to, void* dst, std::size_t count,
                    cudaStream_t stream) {
    if (count == 0) return;
    switch (from) {
        case DType::kF32:
            convert_from(static_cast<const float*>(src), to, dst, count, stream);
            return;
        case DType::kF16:
            convert_from(static_cast<const __half*>(src), to, dst, count, stream);
            return;
        case DType::kBF16:
            convert_from(static_cast<const __nv_bfloat16*>(src), to, dst, count, stream);
            return;
        default:
            return;
    }
}

void launch_embedding(DType type, const void* table, int cols, const int* ids, int rows, float* out,
                      cudaStream_t stream) {
    if (rows == 0) return;
    switch (type) {
        case DType::kF32:
            embedding_kernel<<<rows, kThreads, 0, stream>>>(static_cast<const float*>(table), cols,
                                                            ids, out);
            return;
        case DType::kF16:
            embedding_kernel<<<rows, kThreads, 0, stream>>>(static_cast<const __half*>(table), cols,
                                                            ids, out);
            return;
        case DType::kBF16:
            embedding_kernel<<<rows, kThreads, 0, stream>>>(
                static_cast<const __nv_bfloat16*>(table), cols, ids, out);
            return;
        default:
            return;
    }
}

void launch_gather_rows(const float* x, int cols, const int* rows, int count, float* out,
                        cudaStream_t stream) {
    if (count == 0) return;
    embedding_kernel<<<count, kThreads, 0, stream>>>(x, cols, rows, out);
}

void launch_bias_activation(float* y, const float* bias, bool activate, Activation kind, int rows,
                            int cols, cudaStream_t stream) {
    const std::size_t count = static_cast<std::size_t>(rows) * cols;
    if (count == 0) return;
    bias_activation_kernel<<<elementwise_blocks(count), kThreads, 0, stream>>>(y, bias, activate,
                                                                               kind, cols, count);
}

void launch_add(float* x, const float* y, std::size_t count, cudaStream_t stream) {
    if (count == 0) return;
    add_kernel<<<elementwise_blocks(count), kThreads, 0, stream>>>(x, y, count);
}

void launch_layer_norm(const float* x, const float* gamma, const float* beta, float eps, int rows,
                       int cols, float* y, cudaStream_t stream) {
    if (rows == 0) return;
    layer_norm_kernel<<<rows, kThreads, 0, stream>>>(x, gamma, beta, eps, cols, y);
}

void launch_rms_norm(const float* x, const float* gamma, float eps, int rows, int cols, float* y,
                     cudaStream_t stream) {
    if (rows == 0) return;
    rms_norm_kernel<<<rows, kThreads, 0, stream>>>(x, gamma, eps, cols, y);
}

void launch_gated_activation(const float* gate_up, Activation kind, int rows, int width, float* out,
                             cudaStream_t stream) {
    const std::size_t count = static_cast<std::size_t>(rows) * width;
    if (count == 0) return;
    gated_activation_kernel<<<elementwise_blocks(count), kThreads, 0, stream>>>(gate_up, kind,
                                                                                width, count, out);
}

void launch_transform_qk(float* qkv, PagedRows rows, HeadLayout heads, const QkTransform& transform,
                         cudaStream_t stream) {
    if (rows.rows == 0) return;
    const dim3 grid(rows.rows, heads.n_head + heads.n_kv_head);
    transform_qk_kernel<<<grid, kTransformThreads, 0, stream>>>(qkv, rows, heads, transform);
}

void launch_write_kv(const float* qkv, PagedRows rows, HeadLayout heads, KvLayout layout, int layer,
                     KvFormat format, void* kv, cudaStream_t stream) {
    if (rows.rows == 0) return;
    if (format == KvFormat::kF16)
        write_kv_kernel<<<rows.rows, kThreads, 0, stream>>>(qkv, rows, heads, layout, layer,
                                                            static_cast<__half*>(kv));
    else
        write_kv_kernel<<<rows.rows, kThreads, 0, stream>>>(qkv, rows, heads, layout, layer,
                                                            static_cast<float*>(kv));
}

void launch_paged_attention(const float* qkv, PagedRows rows, const void* kv, KvFormat format,
                            KvLayout layout, int layer, HeadLayout heads, int window, float scale,
                            float* out, cudaStream_t stream) {
    if (rows.rows == 0) return;
    const dim3 grid(rows.rows, heads.n_head);
    if (format == KvFormat::kF16)
        paged_attention_kernel<<<grid, kAttentionWarps * kWarp, 0, stream>>>(
            qkv, rows, static_cast<const __half*>(kv), layout, layer, heads, window, scale, out);
    else
        paged_attention_kernel<<<grid, kAttentionWarps * kWarp, 0, stream>>>(
            qkv, rows, static_cast<const float*>(kv), layout, layer, heads, window, scale, out);
}

}  // namespace llmserve::backend::cuda
