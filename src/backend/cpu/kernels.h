// The CPU kernels, one table per instruction-set tier (scalar, AVX2, AVX-512), picked once at run
// time. The kernels are written once (kernels_isa.cpp, over simd.h's vector types) and compiled
// once per tier with that tier's flags; nothing else in the build assumes more than baseline
// x86-64. Kernels are single-threaded: the backend splits the work (panels of a weight, attention
// tiles, rows) across its worker pool.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/backend.h"
#include "backend/cpu/cpu_features.h"

namespace llmserve::backend::cpu {

// Weights are stored in panels of kPanelWidth output columns. Within a panel:
//   f32 / f16 / bf16: k-major, [k][32] elements, so one k step reads 32 consecutive outputs;
//   q8: blocks of kQ8Block k values, each kQ8BlockBytes long: 32 f16 scales (one per column),
//       then 1024 bytes [k / 4][column][k % 4] of (quantized value + 128) as uint8, so that the
//       4 bytes of one column feed one lane of a VNNI dot product;
//   q4: blocks of kQ8Block k values, each kQ4BlockBytes long: 32 f16 scales, then 512 bytes
//       [k / 8][column][k % 4] of two (quantized value + 8) nibbles, k % 8 < 4 in the low one:
//       one load and two masks give two quads of the q8 layout.
// A q8 / q4 matrix with block biases (PackedView::block_bias) has, in every block, 32 f16 biases
// c (one per column) between the scales and the values: W[k, n] = d * q + c. GGUF's Q4_K and Q5_K
// (w = d * n - m per 32 values) are such blocks without requantizing; the kernels add c times the
// activation block's sum, which its offset already holds.
// Columns past `n` in the last panel and (q8, q4) k values past `k` in the last block are zero.
constexpr int kPanelWidth = 32;
constexpr int kQ8Block = 32;
constexpr std::size_t kQ8ScaleBytes = kPanelWidth * sizeof(std::uint16_t);
constexpr std::size_t kQ8BlockBytes = kQ8ScaleBytes + kPanelWidth * kQ8Block;
constexpr int kQ8Offset = 128;  // stored byte = quantized value + 128
constexpr std::size_t kQ4BlockBytes = kQ8ScaleBytes + kPanelWidth * kQ8Block / 2;
constexpr int kQ4Offset = 8;  // stored nibble = quantized value + 8
constexpr std::size_t kQ8BiasBytes = kPanelWidth * sizeof(std::uint16_t);  // with block biases

// Bytes of one q8 / q4 block, block biases included when `biased`.
constexpr std::size_t quantized_block_bytes(WeightFormat format, bool biased) {
    return (format == WeightFormat::kQ4 ? kQ4BlockBytes : kQ8BlockBytes) +
           (biased ? kQ8BiasBytes : 0);
}

// A read-only view of a packed weight matrix for y = x·W, W being k x n (in x out).
struct PackedView {
    WeightFormat format = WeightFormat::kF32;
    int k = 0;
    int n = 0;
    int panels = 0;           // ceil(n / kPanelWidth)
    bool block_bias = false;  // q8 / q4: every block carries biases after its scales
    std::size_t panel_bytes = 0;
    const std::byte* data = nullptr;  // 64-byte aligned; panel p at data + p * panel_bytes
    int q8_blocks() const { return (k + kQ8Block - 1) / kQ8Block; }
    std::size_t block_bytes() const { return quantized_block_bytes(format, block_bias); }
    const std::byte* panel(int p) const { return data + static_cast<std::size_t>(p) * panel_bytes; }
};

// Activation rows quantized for q8 products (in the spirit of llama.cpp's Q8_0): per row, blocks
// of kQ8Block values q = round(x * (127 / max|x|)) (ties to even), d = max|x| / 127, so that
// x ~ q * d; zero-padded to whole blocks.
struct QuantizedRows {
    int rows = 0;
    int blocks = 0;                   // per row
    std::int8_t* values = nullptr;    // [rows][blocks * kQ8Block]
    float* scales = nullptr;          // [rows][blocks]: d
    std::int32_t* offsets = nullptr;  // [rows][blocks]: -128 * sum of q, undoing the weights' +128
};

// y[r, c] = sum_k x[r, k] W[k, c] (+ bias[c]) for rows [0, m) and the columns of panels
// [panel_begin, panel_end); with `accumulate`, y[r, c] += that instead. x (f32 formats) or xq (q8,
// q4) must be set; y must not alias x.
struct GemmArgs {
    const PackedView* w = nullptr;
    const float* x = nullptr;  // [m, w->k], row stride x_stride
    int x_stride = 0;
    const QuantizedRows* xq = nullptr;
    const float* bias = nullptr;  // [w->n] or null
    float* y = nullptr;           // [m, w->n], row stride y_stride
    int y_stride = 0;
    int m = 0;
    // f16 / bf16: room for one panel widened to f32 (w->k * kPanelWidth floats, 64-byte
    // aligned), private to the calling thread. Null: weights are widened in registers only.
    float* panel_scratch = nullptr;
    bool accumulate = false;  // y += the product (+ bias) instead of y = it
};

// Attention over one layer's paged KV cache. A KV block of block_tokens tokens holds its keys
// transposed, [kv_dim][block_tokens], then its values, [block_tokens][kv_dim], as f32 or f16
// elements (kv_format); blocks are block_stride elements apart. kv_dim = KV heads * head_dim.
struct AttentionArgs {
    const float* qkv = nullptr;  // row r: q | k | v (H, KV, KV heads of head_dim); only q is read
    int qkv_stride = 0;
    float* out = nullptr;  // [rows, H * head_dim]
    int out_stride = 0;
    const int* positions = nullptr;   // [rows]
    const void* kv_blocks = nullptr;  // elements of kv_format
    std::size_t block_stride = 0;     // elements
    int block_tokens = 0;
    int kv_dim = 0;
    int head_dim = 0;
    float scale = 1.0f;
    KvFormat kv_format = KvFormat::kF32;
    int group = 1;  // query heads per key/value head: query head h reads KV head h / group
};

// Up to kAttentionTileRows consecutive rows of one sequence (consecutive positions) and one head.
// Every row attends to the keys at positions [first_key, its position]: a sliding window makes
// first_key > 0, and then a tile has one row.
constexpr int kAttentionTileRows = 4;
struct AttentionTile {
    int first_row = 0;
    int rows = 0;
    int head = 0;
    const int* block_table = nullptr;  // the sequence's KV blocks, in position order
    int first_key = 0;
};

struct KernelTable {
    Isa isa = Isa::kScalar;
    void (*gemm_f32)(const GemmArgs& args, int panel_begin, int panel_end);
    void (*gemm_f16)(const GemmArgs& args, int panel_begin, int panel_end);
    void (*gemm_bf16)(const GemmArgs& args, int panel_begin, int panel_end);
    void (*gemm_q8)(const GemmArgs& args, int panel_begin, int panel_end);
    void (*gemm_q4)(const GemmArgs& args, int panel_begin, int panel_end);
    // Quantizes rows [row_begin, row_end) of x ([rows, k], row stride x_stride) into `out`.
    void (*quantize_rows)(const float* x, int x_stride, int k, int row_begin, int row_end,
                          const QuantizedRows& out);
    // One row of `cols`: y = (x - mean) / sqrt(var + eps) * gamma + beta. y may alias x.
    void (*layer_norm)(const float* x, const float* gamma, const float* beta, float eps, int cols,
                       float* y);
    void (*activation)(Activation kind, float* x, std::size_t count);  // in place
    void (*add)(float* x, const float* y, std::size_t count);          // x += y
    void (*attention)(const AttentionArgs& args, const AttentionTile& tile);
    // Sum of x[0, count) in any order; streams memory at the rate the other kernels can (the
    // bench's bandwidth probe).
    float (*sum)(const float* x, std::size_t count);
    void (*f16_to_f32)(const std::uint16_t* src, std::size_t count, float* dst);
    void (*bf16_to_f32)(const std::uint16_t* src, std::size_t count, float* dst);
    // Rounds to the nearest f16 (ties to even), as f32_to_f16() does.
    void (*f32_to_f16)(const float* src, std::size_t count, std::uint16_t* dst);
};

// The table of `isa`; kUnsupported when this CPU (or this build) lacks it.
const KernelTable& kernel_table(Isa isa);

// One table per compilation of kernels_isa.cpp; only call the ones isa_supported() allows.
const KernelTable& scalar_kernels();
const KernelTable& avx2_kernels();
const KernelTable& avx512_kernels();

// For the kernels: `count` floats private to the calling thread, kept for its next call (the
// scores of an attention row too long for the stack).
float* attention_scratch(std::size_t count);

}  // namespace llmserve::backend::cpu
