// Portable kernels: plain C++ for any CPU, and the tier the vector kernels are tested against.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/packed_matrix.h"
#include "common/dtype.h"

namespace llmserve::backend::cpu {
namespace {

constexpr int kRowTile = 4;

// Decodes k row `kk` of a panel (kPanelWidth weights) into floats.
void decode_panel_row(WeightFormat format, const std::byte* panel, int kk, float* out) {
    const std::size_t base = static_cast<std::size_t>(kk) * kPanelWidth;
    if (format == WeightFormat::kF32) {
        std::memcpy(out, panel + base * sizeof(float), kPanelWidth * sizeof(float));
        return;
    }
    for (int j = 0; j < kPanelWidth; ++j) {
        std::uint16_t half;
        std::memcpy(&half, panel + (base + j) * sizeof(half), sizeof(half));
        out[j] = format == WeightFormat::kF16 ? f16_to_f32(half) : bf16_to_f32(half);
    }
}

void store_tile(const GemmArgs& a, int row0, int rows, int n0, const float (*acc)[kPanelWidth]) {
    const int width = std::min(kPanelWidth, a.w->n - n0);
    for (int r = 0; r < rows; ++r) {
        float* y = a.y + static_cast<std::size_t>(row0 + r) * a.y_stride + n0;
        for (int j = 0; j < width; ++j) {
            const float value = acc[r][j] + (a.bias ? a.bias[n0 + j] : 0.0f);
            y[j] = a.accumulate ? y[j] + value : value;
        }
    }
}

void gemm_float_formats(const GemmArgs& a, int panel_begin, int panel_end) {
    const PackedView& w = *a.w;
    float weights[kPanelWidth];
    for (int p = panel_begin; p < panel_end; ++p) {
        const std::byte* panel = w.panel(p);
        for (int row0 = 0; row0 < a.m; row0 += kRowTile) {
            const int rows = std::min(kRowTile, a.m - row0);
            float acc[kRowTile][kPanelWidth] = {};
            for (int kk = 0; kk < w.k; ++kk) {
                decode_panel_row(w.format, panel, kk, weights);
                for (int r = 0; r < rows; ++r) {
                    const float xk = a.x[static_cast<std::size_t>(row0 + r) * a.x_stride + kk];
                    for (int j = 0; j < kPanelWidth; ++j) acc[r][j] += xk * weights[j];
                }
            }
            store_tile(a, row0, rows, p * kPanelWidth, acc);
        }
    }
}

void gemm_q8(const GemmArgs& a, int panel_begin, int panel_end) {
    const PackedView& w = *a.w;
    const QuantizedRows& xq = *a.xq;
    const int blocks = w.q8_blocks();
    for (int p = panel_begin; p < panel_end; ++p) {
        const std::byte* panel = w.panel(p);
        for (int row0 = 0; row0 < a.m; row0 += kRowTile) {
            const int rows = std::min(kRowTile, a.m - row0);
            float acc[kRowTile][kPanelWidth] = {};
            for (int b = 0; b < blocks; ++b) {
                const std::byte* block = panel + static_cast<std::size_t>(b) * kQ8BlockBytes;
                const auto* values = reinterpret_cast<const std::uint8_t*>(block + kQ8ScaleBytes);
                for (int r = 0; r < rows; ++r) {
                    const std::size_t row = static_cast<std::size_t>(row0 + r);
                    const std::int8_t* x = xq.values + (row * xq.blocks + b) * kQ8Block;
                    const float x_scale = xq.scales[row * xq.blocks + b];
                    for (int j = 0; j < kPanelWidth; ++j) {
                        std::int32_t dot = 0;
                        for (int kk = 0; kk < kQ8Block; ++kk) {
                            const int stored = values[((kk / 4) * kPanelWidth + j) * 4 + kk % 4];
                            dot += (stored - kQ8Offset) * x[kk];
                        }
                        std::uint16_t scale_bits;
                        std::memcpy(&scale_bits, block + j * sizeof(scale_bits),
                                    sizeof(scale_bits));
                        acc[r][j] += static_cast<float>(dot) * (f16_to_f32(scale_bits) * x_scale);
                    }
                }
            }
            store_tile(a, row0, rows, p * kPanelWidth, acc);
        }
    }
}

void quantize_rows(const float* x, int x_stride, int k, int row_begin, int row_end,
                   const QuantizedRows& out) {
    for (int r = row_begin; r < row_end; ++r) {
        const float* row = x + static_cast<std::size_t>(r) * x_stride;
        for (int b = 0; b < out.blocks; ++b) {
            const int begin = b * kQ8Block;
            const int end = std::min(k, begin + kQ8Block);
            float amax = 0.0f;
            for (int i = begin; i < end; ++i) amax = std::max(amax, std::abs(row[i]));
            const float inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
            const std::size_t slot = static_cast<std::size_t>(r) * out.blocks + b;
            std::int8_t* q = out.values + slot * kQ8Block;
            std::int32_t sum = 0;
            for (int i = 0; i < kQ8Block; ++i) {
                const float v = begin + i < end ? std::nearbyint(row[begin + i] * inverse) : 0.0f;
                q[i] = static_cast<std::int8_t>(std::clamp(v, -127.0f, 127.0f));
                sum += q[i];
            }
            out.scales[slot] = amax / 127.0f;
            out.offsets[slot] = -kQ8Offset * sum;
        }
    }
}

void layer_norm(const float* x, const float* gamma, const float* beta, float eps, int cols,
                float* y) {
    double sum = 0.0;
    for (int c = 0; c < cols; ++c) sum += x[c];
    const auto mean = static_cast<float>(sum / cols);
    double squares = 0.0;
    for (int c = 0; c < cols; ++c) squares += (x[c] - mean) * (x[c] - mean);
    const float inv_std = 1.0f / std::sqrt(static_cast<float>(squares / cols) + eps);
    for (int c = 0; c < cols; ++c) y[c] = (x[c] - mean) * inv_std * gamma[c] + beta[c];
}

float activate(Activation kind, float x) {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    switch (kind) {
        case Activation::kGeluNew:
            return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
        case Activation::kGeluFast:
            return 0.5f * x * (1.0f + std::tanh(x * kSqrt2OverPi * (1.0f + 0.044715f * x * x)));
        case Activation::kGelu:
            return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
        case Activation::kRelu:
            return x > 0.0f ? x : 0.0f;
        case Activation::kSilu:
            return x / (1.0f + std::exp(-x));
    }
    return x;
}

void activation(Activation kind, float* x, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) x[i] = activate(kind, x[i]);
}

void add(float* x, const float* y, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) x[i] += y[i];
}

float kv_float(float element) {
    return element;
}
float kv_float(std::uint16_t element) {
    return f16_to_f32(element);
}

template <typename Element>
void attention_rows(const AttentionArgs& a, const AttentionTile& tile) {
    const int bt = a.block_tokens;
    const auto* blocks = static_cast<const Element*>(a.kv_blocks);
    const int kv_offset = tile.head / a.group * a.head_dim;  // the query head's key/value head
    std::vector<float> scores;
    for (int i = 0; i < tile.rows; ++i) {
        const int row = tile.first_row + i;
        const int length = a.positions[row] + 1;
        const float* q =
            a.qkv + static_cast<std::size_t>(row) * a.qkv_stride + tile.head * a.head_dim;
        scores.resize(length);
        float max_score = -INFINITY;
        for (int t = tile.first_key; t < length; ++t) {
            const Element* keys = blocks + tile.block_table[t / bt] * a.block_stride;
            float dot = 0.0f;
            for (int d = 0; d < a.head_dim; ++d)
                dot += q[d] * kv_float(keys[static_cast<std::size_t>(kv_offset + d) * bt + t % bt]);
            scores[t] = dot * a.scale;
            max_score = std::max(max_score, scores[t]);
        }
        float sum = 0.0f;
        for (int t = tile.first_key; t < length; ++t) {
            scores[t] = std::exp(scores[t] - max_score);
            sum += scores[t];
        }
        float* o = a.out + static_cast<std::size_t>(row) * a.out_stride + tile.head * a.head_dim;
        std::fill_n(o, a.head_dim, 0.0f);
        for (int t = tile.first_key; t < length; ++t) {
            const float weight = scores[t] / sum;
            const Element* values = blocks + tile.block_table[t / bt] * a.block_stride +
                                    static_cast<std::size_t>(bt) * a.kv_dim +
                                    static_cast<std::size_t>(t % bt) * a.kv_dim + kv_offset;
            for (int d = 0; d < a.head_dim; ++d) o[d] += weight * kv_float(values[d]);
        }
    }
}

void attention(const AttentionArgs& a, const AttentionTile& tile) {
    if (a.kv_format == KvFormat::kF16)
        attention_rows<std::uint16_t>(a, tile);
    else
        attention_rows<float>(a, tile);
}

float sum(const float* x, std::size_t count) {
    float partial[4] = {};
    std::size_t i = 0;
    for (; i + 4 <= count; i += 4)
        for (int lane = 0; lane < 4; ++lane) partial[lane] += x[i + lane];
    for (; i < count; ++i) partial[0] += x[i];
    return (partial[0] + partial[1]) + (partial[2] + partial[3]);
}

void f16_to_f32_rows(const std::uint16_t* src, std::size_t count, float* dst) {
    for (std::size_t i = 0; i < count; ++i) dst[i] = f16_to_f32(src[i]);
}

void bf16_to_f32_rows(const std::uint16_t* src, std::size_t count, float* dst) {
    for (std::size_t i = 0; i < count; ++i) dst[i] = bf16_to_f32(src[i]);
}

void f32_to_f16_rows(const float* src, std::size_t count, std::uint16_t* dst) {
    for (std::size_t i = 0; i < count; ++i) dst[i] = f32_to_f16(src[i]);
}

}  // namespace

const KernelTable& scalar_kernels() {
    static const KernelTable table{
        .isa = Isa::kScalar,
        .gemm_f32 = gemm_float_formats,
        .gemm_f16 = gemm_float_formats,
        .gemm_bf16 = gemm_float_formats,
        .gemm_q8 = gemm_q8,
        .quantize_rows = quantize_rows,
        .layer_norm = layer_norm,
        .activation = activation,
        .add = add,
        .attention = attention,
        .sum = sum,
        .f16_to_f32 = f16_to_f32_rows,
        .bf16_to_f32 = bf16_to_f32_rows,
        .f32_to_f16 = f32_to_f16_rows,
    };
    return table;
}

}  // namespace llmserve::backend::cpu
