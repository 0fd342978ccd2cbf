// Every CPU kernel, written once over simd.h's vectors and compiled once per instruction-set
// tier (LLMSERVE_KERNEL_ISA, with that tier's flags; see src/backend/CMakeLists.txt). Only the
// tile shapes below differ between tiers: they follow the register file. Internal linkage and
// no std templates, so none of this code can be merged across tiers by the linker.
#include "backend/cpu/simd.h"

#include "backend/cpu/kernels.h"

namespace llmserve::backend::cpu {
namespace {

using simd::kLanes;
using simd::Mask;
using simd::Vf;
using simd::Vi;

constexpr int kPanelVecs = kPanelWidth / kLanes;  // vectors across one panel
#if LLMSERVE_KERNEL_ISA == 2
// 32 registers: 12 rows x 2 vectors of accumulators + 2 weights + 1 x.
constexpr int kGemmRows = 12, kGemmVecs = 2;
constexpr int kQ8Rows = 4;  // 8 int32 + 8 float accumulators
constexpr bool kThreePassDecode = true;
#elif LLMSERVE_KERNEL_ISA == 1
// 16 registers: half panels, 6 rows x 2 vectors + 2 weights + 1 x.
constexpr int kGemmRows = 6, kGemmVecs = 2;
constexpr int kQ8Rows = 1;
constexpr bool kThreePassDecode = false;
#else
constexpr int kGemmRows = 4, kGemmVecs = kPanelVecs;
constexpr int kQ8Rows = 4;
constexpr bool kThreePassDecode = true;
#endif
constexpr int kMaxHeadDim = 256;
constexpr int kMaxStackContext = 4096;  // scores of one row kept on the stack (16 KiB)
// 16-bit weights are widened once per panel into an f32 copy (it stays in L2) when at least this
// many rows reuse it; decode-sized products widen in registers instead.
constexpr int kWidenRows = 24;

// Loops over the vectors of a tile are unrolled in the vector tiers (each vector is a register);
// the scalar tier's 32 one-lane vectors stay a loop, for the compiler to vectorize as it can.
#if LLMSERVE_KERNEL_ISA > 0
#define LLMSERVE_UNROLL_VECS _Pragma("GCC unroll 4")
#else
#define LLMSERVE_UNROLL_VECS _Pragma("GCC unroll 1")
#endif

inline int min_int(int a, int b) {
    return a < b ? a : b;
}

// Calls fn(Count<r>{}) for the run-time `rows` in [1, Max]: tile sizes are template arguments so
// that accumulators stay in registers.
template <int N>
struct Count {
    static constexpr int value = N;
};
template <int Max, typename Fn>
inline void with_rows(int rows, Fn&& fn) {
    if constexpr (Max > 0) {
        if (rows == Max) {
            fn(Count<Max>{});
            return;
        }
        with_rows<Max - 1>(rows, fn);
    }
}

// ---- matrix products -------------------------------------------------------------------------

// Weights kk, columns [col, col + kLanes) of a panel as f32.
template <WeightFormat F>
inline Vf load_weights(const std::byte* panel, int kk, int col) {
    const std::size_t index = static_cast<std::size_t>(kk) * kPanelWidth + col;
    if constexpr (F == WeightFormat::kF32) {
        return simd::load_aligned(reinterpret_cast<const float*>(panel) + index);
    } else if constexpr (F == WeightFormat::kF16) {
        return simd::load_f16_aligned(reinterpret_cast<const std::uint16_t*>(panel) + index);
    } else {
        return simd::load_bf16_aligned(reinterpret_cast<const std::uint16_t*>(panel) + index);
    }
}

// Columns [col0, col0 + Vecs vectors) of the panel at n0 for rows [row0, row0 + Rows): + bias,
// + y when accumulating; nothing is written past column n.
template <int Rows, int Vecs>
inline void store_rows(const GemmArgs& a, int row0, int n0, int col0, Vf (&acc)[Rows][Vecs]) {
    const int width = a.w->n - n0 - col0;
    LLMSERVE_UNROLL_VECS
    for (int v = 0; v < Vecs; ++v) {
        const Mask mask = simd::first_lanes(width - kLanes * v);
        if (!simd::any(mask)) break;
        const int col = n0 + col0 + kLanes * v;
        const Vf bias = a.bias != nullptr ? simd::load(mask, a.bias + col) : simd::zero();
#pragma GCC unroll 16
        for (int r = 0; r < Rows; ++r) {
            float* y = a.y + static_cast<std::size_t>(row0 + r) * a.y_stride + col;
            Vf value = simd::add(acc[r][v], bias);
            if (a.accumulate) value = simd::add(simd::load(mask, y), value);
            simd::store(mask, y, value);
        }
    }
}

// y for Rows rows and Vecs vectors of columns from col0: broadcast x, Vecs weight vectors per k.
template <WeightFormat F, int Rows, int Vecs>
void float_tile(const GemmArgs& a, const std::byte* panel, int row0, int n0, int col0) {
    Vf acc[Rows][Vecs];
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) LLMSERVE_UNROLL_VECS
    for (int v = 0; v < Vecs; ++v) acc[r][v] = simd::zero();
    const float* x = a.x + static_cast<std::size_t>(row0) * a.x_stride;
    const std::size_t stride = a.x_stride;
    for (int kk = 0; kk < a.w->k; ++kk) {
        Vf w[Vecs];
        LLMSERVE_UNROLL_VECS
        for (int v = 0; v < Vecs; ++v) w[v] = load_weights<F>(panel, kk, col0 + kLanes * v);
#pragma GCC unroll 16
        for (int r = 0; r < Rows; ++r) {
            const Vf xr = simd::set1(x[r * stride + kk]);
            LLMSERVE_UNROLL_VECS
            for (int v = 0; v < Vecs; ++v) acc[r][v] = simd::fma(xr, w[v], acc[r][v]);
        }
    }
    store_rows<Rows, Vecs>(a, row0, n0, col0, acc);
}

// Every row tile of one panel whose weights are stored as F.
template <WeightFormat F>
void panel_rows(const GemmArgs& a, const std::byte* panel, int n0) {
    for (int col0 = 0; col0 < kPanelWidth; col0 += kGemmVecs * kLanes) {
        int row0 = 0;
        for (; row0 + kGemmRows <= a.m; row0 += kGemmRows)
            float_tile<F, kGemmRows, kGemmVecs>(a, panel, row0, n0, col0);
        with_rows<kGemmRows - 1>(a.m - row0, [&](auto rows) {
            float_tile<F, decltype(rows)::value, kGemmVecs>(a, panel, row0, n0, col0);
        });
    }
}

template <WeightFormat F>
void gemm_float(const GemmArgs& a, int panel_begin, int panel_end) {
    float* const widened = F != WeightFormat::kF32 && a.m >= kWidenRows ? a.panel_scratch : nullptr;
    for (int p = panel_begin; p < panel_end; ++p) {
        const std::byte* panel = a.w->panel(p);
        const int n0 = p * kPanelWidth;
        if (a.m <= 2) {  // decode: the whole panel at once
            with_rows<2>(a.m, [&](auto rows) {
                float_tile<F, decltype(rows)::value, kPanelVecs>(a, panel, 0, n0, 0);
            });
            continue;
        }
        if (widened == nullptr) {
            panel_rows<F>(a, panel, n0);
            continue;
        }
        for (int kk = 0; kk < a.w->k; ++kk)
            for (int col = 0; col < kPanelWidth; col += kLanes)
                simd::store_aligned(widened + static_cast<std::size_t>(kk) * kPanelWidth + col,
                                    load_weights<F>(panel, kk, col));
        panel_rows<WeightFormat::kF32>(a, reinterpret_cast<const std::byte*>(widened), n0);
    }
}

// One block's integer dot products for format F (q8 bytes or q4 nibbles): see simd.h.
template <WeightFormat F>
inline Vi block_start(std::int32_t offset) {
    return F == WeightFormat::kQ8 ? simd::q8_block_start(offset) : simd::q4_block_start(offset);
}
template <WeightFormat F>
inline Vi quad_dot(Vi acc, Vi weights, Vi x_quad) {
    return F == WeightFormat::kQ8 ? simd::q8_dot(acc, weights, x_quad)
                                  : simd::q4_dot(acc, weights, x_quad);
}

// q8 / q4 (F), Rows rows x one panel: per block, int32 sums of weight x activation, then scaled
// by d_w * d_x into float accumulators; with block biases (Biased), + c * d_x * (sum of the
// activation block's q), that sum being -offset / 128.
template <WeightFormat F, bool Biased, int Rows>
void quantized_tile(const GemmArgs& a, const std::byte* panel, int row0, int n0) {
    constexpr std::size_t kBlockBytes = quantized_block_bytes(F, Biased);
    constexpr std::size_t kValuesAt = kQ8ScaleBytes + (Biased ? kQ8BiasBytes : 0);
    const QuantizedRows& xq = *a.xq;
    const int blocks = a.w->q8_blocks();
    Vf acc[Rows][kPanelVecs];
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) LLMSERVE_UNROLL_VECS
    for (int v = 0; v < kPanelVecs; ++v) acc[r][v] = simd::zero();
    for (int b = 0; b < blocks; ++b) {
        const std::byte* block = panel + static_cast<std::size_t>(b) * kBlockBytes;
        const std::byte* weights = block + kValuesAt;
        Vi dot[Rows][kPanelVecs];
        const std::int8_t* x[Rows];
#pragma GCC unroll 8
        for (int r = 0; r < Rows; ++r) {
            const std::size_t slot = static_cast<std::size_t>(row0 + r) * xq.blocks + b;
            LLMSERVE_UNROLL_VECS
            for (int v = 0; v < kPanelVecs; ++v) dot[r][v] = block_start<F>(xq.offsets[slot]);
            x[r] = xq.values + slot * kQ8Block;
        }
        // Two quads (8 k values) per step: one q4 load holds both.
#pragma GCC unroll 4
        for (int pair = 0; pair < kQ8Block / 8; ++pair) {
            Vi low[kPanelVecs], high[kPanelVecs];
            LLMSERVE_UNROLL_VECS
            for (int v = 0; v < kPanelVecs; ++v) {
                if constexpr (F == WeightFormat::kQ8) {
                    const std::byte* quad = weights + (2 * pair * kPanelWidth + v * kLanes) * 4;
                    low[v] = simd::load_bytes_aligned(quad);
                    high[v] = simd::load_bytes_aligned(quad + kPanelWidth * 4);
                } else {
                    const Vi packed =
                        simd::load_bytes_aligned(weights + (pair * kPanelWidth + v * kLanes) * 4);
                    low[v] = simd::low_nibbles(packed);
                    high[v] = simd::high_nibbles(packed);
                }
            }
#pragma GCC unroll 8
            for (int r = 0; r < Rows; ++r) {
                const Vi x_low = simd::broadcast_quad(x[r] + 8 * pair);
                const Vi x_high = simd::broadcast_quad(x[r] + 8 * pair + 4);
                LLMSERVE_UNROLL_VECS
                for (int v = 0; v < kPanelVecs; ++v)
                    dot[r][v] = quad_dot<F>(quad_dot<F>(dot[r][v], low[v], x_low), high[v], x_high);
            }
        }
        const auto* scales = reinterpret_cast<const std::uint16_t*>(block);
#pragma GCC unroll 8
        for (int r = 0; r < Rows; ++r) {
            const std::size_t slot = static_cast<std::size_t>(row0 + r) * xq.blocks + b;
            const Vf dx = simd::set1(xq.scales[slot]);
            LLMSERVE_UNROLL_VECS
            for (int v = 0; v < kPanelVecs; ++v) {
                const Vf dw = simd::load_f16_aligned(scales + kLanes * v);
                acc[r][v] = simd::fma(simd::to_float(dot[r][v]), simd::mul(dw, dx), acc[r][v]);
            }
            if constexpr (Biased) {
                const Vf x_sum =
                    simd::set1(xq.scales[slot] * static_cast<float>(-xq.offsets[slot] / kQ8Offset));
                LLMSERVE_UNROLL_VECS
                for (int v = 0; v < kPanelVecs; ++v)
                    acc[r][v] = simd::fma(simd::load_f16_aligned(scales + kPanelWidth + kLanes * v),
                                          x_sum, acc[r][v]);
            }
        }
    }
    store_rows<Rows, kPanelVecs>(a, row0, n0, 0, acc);
}

template <WeightFormat F, bool Biased>
void quantized_panels(const GemmArgs& a, int panel_begin, int panel_end) {
    for (int p = panel_begin; p < panel_end; ++p) {
        const std::byte* panel = a.w->panel(p);
        const int n0 = p * kPanelWidth;
        int row0 = 0;
        for (; row0 + kQ8Rows <= a.m; row0 += kQ8Rows)
            quantized_tile<F, Biased, kQ8Rows>(a, panel, row0, n0);
        with_rows<kQ8Rows - 1>(a.m - row0, [&](auto rows) {
            quantized_tile<F, Biased, decltype(rows)::value>(a, panel, row0, n0);
        });
    }
}

// Block biases are a property of the whole matrix: checked once per call, so that matrices
// without them run the same code as before they existed.
template <WeightFormat F>
void gemm_quantized(const GemmArgs& a, int panel_begin, int panel_end) {
    if (a.w->block_bias)
        quantized_panels<F, true>(a, panel_begin, panel_end);
    else
        quantized_panels<F, false>(a, panel_begin, panel_end);
}

void quantize_rows(const float* x, int x_stride, int k, int row_begin, int row_end,
                   const QuantizedRows& out) {
    constexpr int kVecs = kQ8Block / kLanes;
    for (int r = row_begin; r < row_end; ++r) {
        const float* row = x + static_cast<std::size_t>(r) * x_stride;
        for (int b = 0; b < out.blocks; ++b) {
            const int begin = b * kQ8Block;
            Vf v[kVecs];
            Vf amax_v = simd::zero();
            LLMSERVE_UNROLL_VECS
            for (int i = 0; i < kVecs; ++i) {
                const int at = begin + kLanes * i;
                v[i] = simd::load(simd::first_lanes(k - at), row + at);
                amax_v = simd::max(amax_v, simd::abs(v[i]));
            }
            const float amax = simd::reduce_max(amax_v);
            const Vf inverse = simd::set1(amax > 0.0f ? 127.0f / amax : 0.0f);
            const std::size_t slot = static_cast<std::size_t>(r) * out.blocks + b;
            std::int8_t* q = out.values + slot * kQ8Block;
            Vi sum = simd::zero_int();
            LLMSERVE_UNROLL_VECS
            for (int i = 0; i < kVecs; ++i) {
                const Vi qi = simd::clamp(simd::round_to_int(simd::mul(v[i], inverse)), -127, 127);
                simd::store_int8(q + kLanes * i, qi);
                sum = simd::add(sum, qi);
            }
            out.scales[slot] = amax / 127.0f;
            out.offsets[slot] = -kQ8Offset * simd::reduce_add(sum);
        }
    }
}

// ---- element-wise -----------------------------------------------------------------------------

void layer_norm(const float* x, const float* gamma, const float* beta, float eps, int cols,
                float* y) {
    Vf sum = simd::zero();
    for (int c = 0; c < cols; c += kLanes)
        sum = simd::add(sum, simd::load(simd::first_lanes(cols - c), x + c));
    const Vf mean = simd::set1(simd::reduce_add(sum) / static_cast<float>(cols));
    Vf squares = simd::zero();
    for (int c = 0; c < cols; c += kLanes) {
        const Mask m = simd::first_lanes(cols - c);
        const Vf d = simd::keep(m, simd::sub(simd::load(m, x + c), mean));
        squares = simd::fma(d, d, squares);
    }
    const Vf inv_std =
        simd::set1(1.0f / ::sqrtf(simd::reduce_add(squares) / static_cast<float>(cols) + eps));
    for (int c = 0; c < cols; c += kLanes) {
        const Mask m = simd::first_lanes(cols - c);
        const Vf d = simd::mul(simd::sub(simd::load(m, x + c), mean), inv_std);
        simd::store(m, y + c, simd::fma(d, simd::load(m, gamma + c), simd::load(m, beta + c)));
    }
}

inline Vf activate(Activation kind, Vf x) {
    const Vf half = simd::set1(0.5f), one = simd::set1(1.0f);
    const Vf sqrt_2_over_pi = simd::set1(0.7978845608028654f), c = simd::set1(0.044715f);
    switch (kind) {
        case Activation::kGeluNew: {  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            const Vf inner =
                simd::mul(sqrt_2_over_pi, simd::fma(simd::mul(c, x), simd::mul(x, x), x));
            return simd::mul(simd::mul(half, x), simd::add(one, simd::tanh(inner)));
        }
        case Activation::kGeluFast: {  // 0.5 x (1 + tanh(x sqrt(2/pi) (1 + 0.044715 x^2)))
            const Vf inner =
                simd::mul(simd::mul(x, sqrt_2_over_pi), simd::fma(c, simd::mul(x, x), one));
            return simd::mul(simd::mul(half, x), simd::add(one, simd::tanh(inner)));
        }
        case Activation::kRelu:
            return simd::max(x, simd::zero());
        case Activation::kSilu:
            return simd::div(x, simd::add(one, simd::exp(simd::sub(simd::zero(), x))));
        case Activation::kGelu:
            break;
    }
    return x;
}

void activation(Activation kind, float* x, std::size_t count) {
    if (kind == Activation::kGelu) {  // erf has no vector form here; rare in GPT-2 checkpoints
        for (std::size_t i = 0; i < count; ++i)
            x[i] = 0.5f * x[i] * (1.0f + ::erff(x[i] * 0.7071067811865476f));
        return;
    }
    std::size_t i = 0;
    for (; i + kLanes <= count; i += kLanes) simd::store(x + i, activate(kind, simd::load(x + i)));
    if (i < count) {
        const Mask m = simd::first_lanes(static_cast<int>(count - i));
        simd::store(m, x + i, activate(kind, simd::load(m, x + i)));
    }
}

void add(float* x, const float* y, std::size_t count) {
    std::size_t i = 0;
    for (; i + kLanes <= count; i += kLanes)
        simd::store(x + i, simd::add(simd::load(x + i), simd::load(y + i)));
    if (i < count) {
        const Mask m = simd::first_lanes(static_cast<int>(count - i));
        simd::store(m, x + i, simd::add(simd::load(m, x + i), simd::load(m, y + i)));
    }
}

float sum(const float* x, std::size_t count) {
    Vf a = simd::zero(), b = a, c = a, d = a;  // independent chains
    std::size_t i = 0;
    for (; i + 4 * kLanes <= count; i += 4 * kLanes) {
        a = simd::add(a, simd::load(x + i));
        b = simd::add(b, simd::load(x + i + kLanes));
        c = simd::add(c, simd::load(x + i + 2 * kLanes));
        d = simd::add(d, simd::load(x + i + 3 * kLanes));
    }
    for (; i < count; i += kLanes)
        a = simd::add(a, simd::load(simd::first_lanes(static_cast<int>(count - i)), x + i));
    return simd::reduce_add(simd::add(simd::add(a, b), simd::add(c, d)));
}

// ---- conversions -----------------------------------------------------------------------------

void f16_to_f32(const std::uint16_t* src, std::size_t count, float* dst) {
    std::size_t i = 0;
    for (; i + kLanes <= count; i += kLanes) simd::store(dst + i, simd::load_f16(src + i));
    if (i < count) {
        const Mask m = simd::first_lanes(static_cast<int>(count - i));
        simd::store(m, dst + i, simd::load_f16(m, src + i));
    }
}

void bf16_to_f32(const std::uint16_t* src, std::size_t count, float* dst) {
    std::size_t i = 0;
    for (; i + kLanes <= count; i += kLanes) simd::store(dst + i, simd::load_bf16(src + i));
    if (i < count) {
        const Mask m = simd::first_lanes(static_cast<int>(count - i));
        simd::store(m, dst + i, simd::load_bf16(m, src + i));
    }
}

void f32_to_f16(const float* src, std::size_t count, std::uint16_t* dst) {
    std::size_t i = 0;
    for (; i + kLanes <= count; i += kLanes) simd::store_f16(dst + i, simd::load(src + i));
    if (i < count) {
        const Mask m = simd::first_lanes(static_cast<int>(count - i));
        simd::store_f16(m, dst + i, simd::load(m, src + i));
    }
}

// ---- attention -------------------------------------------------------------------------------

inline Vf load_kv(Mask m, const float* p) {
    return simd::load(m, p);
}
inline Vf load_kv(Mask m, const std::uint16_t* p) {
    return simd::load_f16(m, p);
}

// Flash-attention style over chunks of kLanes keys: scores for Rows queries at once, an online
// softmax (running max and sum per row, earlier output rescaled when the max grows), then P·V.
// Enough independent FMA chains even for one row: q·k is split into kSets partial sums, and P·V
// accumulates kGroup vectors of dimensions per row at once (fewer when registers run out).
template <typename Element, int Rows>
void attention_tile(const AttentionArgs& a, const AttentionTile& tile) {
    constexpr int kSets = Rows == 1 ? 4 : 2;
    constexpr int kGroup = kLanes >= 16 || Rows <= 2 ? 4 : 2;
    const int hd = a.head_dim, bt = a.block_tokens;
    const int head_offset = tile.head * hd;
    const int kv_offset = tile.head / a.group * hd;  // the query head's key/value head
    const float* q[Rows];
    int position[Rows];
    float running_max[Rows], running_sum[Rows];
    alignas(64) float out[Rows][kMaxHeadDim];  // whole groups: zero beyond hd
    alignas(64) float weights[Rows][kLanes];
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i) {
        const int row = tile.first_row + i;
        q[i] = a.qkv + static_cast<std::size_t>(row) * a.qkv_stride + head_offset;
        position[i] = a.positions[row];
        running_max[i] = -INFINITY;
        running_sum[i] = 0.0f;
        for (int d = 0; d < kMaxHeadDim; d += kLanes) simd::store_aligned(out[i] + d, simd::zero());
    }
    const int last = position[Rows - 1];  // rows are consecutive positions: the last sees most
    for (int start = tile.first_key, keys_here = 0; start <= last; start += keys_here) {
        const int block = start / bt, chunk = start % bt;
        // A chunk never crosses a block: it ends at the block's end when bt is not a multiple
        // of kLanes.
        keys_here = min_int(min_int(kLanes, bt - chunk), last + 1 - start);
        const Element* base =
            static_cast<const Element*>(a.kv_blocks) + tile.block_table[block] * a.block_stride;
        const Element* keys = base + static_cast<std::size_t>(kv_offset) * bt + chunk;
        const Element* values = base + static_cast<std::size_t>(bt) * a.kv_dim +
                                static_cast<std::size_t>(chunk) * a.kv_dim + kv_offset;
        const Mask key_mask = simd::first_lanes(keys_here);

        Vf partial[kSets][Rows];
#pragma GCC unroll 4
        for (int set = 0; set < kSets; ++set)
#pragma GCC unroll 4
            for (int i = 0; i < Rows; ++i) partial[set][i] = simd::zero();
        int d = 0;
        for (; d + kSets <= hd; d += kSets) {
#pragma GCC unroll 4
            for (int set = 0; set < kSets; ++set) {
                const Vf k = load_kv(key_mask, keys + static_cast<std::size_t>(d + set) * bt);
#pragma GCC unroll 4
                for (int i = 0; i < Rows; ++i)
                    partial[set][i] = simd::fma(simd::set1(q[i][d + set]), k, partial[set][i]);
            }
        }
        for (; d < hd; ++d) {
            const Vf k = load_kv(key_mask, keys + static_cast<std::size_t>(d) * bt);
#pragma GCC unroll 4
            for (int i = 0; i < Rows; ++i)
                partial[0][i] = simd::fma(simd::set1(q[i][d]), k, partial[0][i]);
        }
        float rescale[Rows];
#pragma GCC unroll 4
        for (int i = 0; i < Rows; ++i) {
            const Mask visible = simd::first_lanes(min_int(keys_here, position[i] + 1 - start));
            rescale[i] = 1.0f;
            if (!simd::any(visible)) {
                simd::store_aligned(weights[i], simd::zero());
                continue;
            }
            Vf dot = partial[0][i];
#pragma GCC unroll 4
            for (int set = 1; set < kSets; ++set) dot = simd::add(dot, partial[set][i]);
            const Vf s = simd::mul(dot, simd::set1(a.scale));
            const float chunk_max = simd::reduce_max(visible, s);
            const float new_max = chunk_max > running_max[i] ? chunk_max : running_max[i];
            rescale[i] = ::expf(running_max[i] - new_max);
            const Vf p = simd::keep(visible, simd::exp(simd::sub(s, simd::set1(new_max))));
            running_sum[i] = running_sum[i] * rescale[i] + simd::reduce_add(p);
            running_max[i] = new_max;
            simd::store_aligned(weights[i], p);
        }
        for (int d0 = 0; d0 < hd; d0 += kLanes * kGroup) {
            Mask dim_mask[kGroup];
            Vf o[Rows][kGroup];
#pragma GCC unroll 4
            for (int v = 0; v < kGroup; ++v) dim_mask[v] = simd::first_lanes(hd - d0 - kLanes * v);
#pragma GCC unroll 4
            for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 4
                for (int v = 0; v < kGroup; ++v)
                    o[i][v] = simd::mul(simd::load_aligned(out[i] + d0 + kLanes * v),
                                        simd::set1(rescale[i]));
            for (int t = 0; t < keys_here; ++t) {
                const Element* row = values + static_cast<std::size_t>(t) * a.kv_dim + d0;
                Vf value[kGroup];
#pragma GCC unroll 4
                for (int v = 0; v < kGroup; ++v) value[v] = load_kv(dim_mask[v], row + kLanes * v);
#pragma GCC unroll 4
                for (int i = 0; i < Rows; ++i) {
                    const Vf weight = simd::set1(weights[i][t]);
#pragma GCC unroll 4
                    for (int v = 0; v < kGroup; ++v) o[i][v] = simd::fma(weight, value[v], o[i][v]);
                }
            }
#pragma GCC unroll 4
            for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 4
                for (int v = 0; v < kGroup; ++v)
                    simd::store_aligned(out[i] + d0 + kLanes * v, o[i][v]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i) {
        float* dst =
            a.out + static_cast<std::size_t>(tile.first_row + i) * a.out_stride + head_offset;
        const Vf inverse = simd::set1(1.0f / running_sum[i]);
        for (int d = 0; d < hd; d += kLanes)
            simd::store(simd::first_lanes(hd - d), dst + d,
                        simd::mul(simd::load_aligned(out[i] + d), inverse));
    }
}

// One query row in three passes, so that no step waits on a running maximum: every score (q·k
// split into 4 partial sums) into `scores`, then their softmax, then P·V with two interleaved
// sets of accumulators. Any head size and context.
template <typename Element>
void attention_row(const AttentionArgs& a, const AttentionTile& tile, int row, float* scores) {
    constexpr int kVecs = kLanes > 1 ? 4 : 16;  // P·V dimensions per pass: kVecs vectors
    const int hd = a.head_dim, bt = a.block_tokens;
    const int head_offset = tile.head * hd;
    const int kv_offset = tile.head / a.group * hd;  // the query head's key/value head
    const float* q = a.qkv + static_cast<std::size_t>(row) * a.qkv_stride + head_offset;
    const int length = a.positions[row] + 1;
    Vf max_v = simd::set1(-INFINITY);
    for (int start = tile.first_key, keys_here = 0; start < length; start += keys_here) {
        const int chunk = start % bt;
        keys_here = min_int(min_int(kLanes, bt - chunk), length - start);
        const Element* keys = static_cast<const Element*>(a.kv_blocks) +
                              tile.block_table[start / bt] * a.block_stride +
                              static_cast<std::size_t>(kv_offset) * bt + chunk;
        const Mask mask = simd::first_lanes(keys_here);
        Vf partial[4] = {simd::zero(), simd::zero(), simd::zero(), simd::zero()};
        int d = 0;
        for (; d + 4 <= hd; d += 4)
#pragma GCC unroll 4
            for (int set = 0; set < 4; ++set)
                partial[set] = simd::fma(
                    simd::set1(q[d + set]),
                    load_kv(mask, keys + static_cast<std::size_t>(d + set) * bt), partial[set]);
        for (; d < hd; ++d)
            partial[0] =
                simd::fma(simd::set1(q[d]), load_kv(mask, keys + static_cast<std::size_t>(d) * bt),
                          partial[0]);
        const Vf s = simd::mul(
            simd::add(simd::add(partial[0], partial[1]), simd::add(partial[2], partial[3])),
            simd::set1(a.scale));
        simd::store(mask, scores + start, s);
        max_v = simd::max(mask, max_v, s);
    }
    const Vf max_score = simd::set1(simd::reduce_max(max_v));
    Vf sum_v = simd::zero();
    for (int t = tile.first_key; t < length; t += kLanes) {
        const Mask mask = simd::first_lanes(length - t);
        const Vf p =
            simd::keep(mask, simd::exp(simd::sub(simd::load(mask, scores + t), max_score)));
        simd::store(mask, scores + t, p);
        sum_v = simd::add(sum_v, p);
    }
    const Vf inverse = simd::set1(1.0f / simd::reduce_add(sum_v));
    float* dst = a.out + static_cast<std::size_t>(row) * a.out_stride + head_offset;
    auto value_row = [&](int t, int d0) {
        return static_cast<const Element*>(a.kv_blocks) +
               tile.block_table[t / bt] * a.block_stride + static_cast<std::size_t>(bt) * a.kv_dim +
               static_cast<std::size_t>(t % bt) * a.kv_dim + kv_offset + d0;
    };
    for (int d0 = 0; d0 < hd; d0 += kLanes * kVecs) {
        Mask dim_mask[kVecs];
        Vf even[kVecs], odd[kVecs];
        LLMSERVE_UNROLL_VECS
        for (int v = 0; v < kVecs; ++v) {
            dim_mask[v] = simd::first_lanes(hd - d0 - kLanes * v);
            even[v] = odd[v] = simd::zero();
        }
        int t = tile.first_key;
        for (; t + 2 <= length; t += 2) {
            const Element* row0 = value_row(t, d0);
            const Element* row1 = value_row(t + 1, d0);
            const Vf p0 = simd::set1(scores[t]), p1 = simd::set1(scores[t + 1]);
            LLMSERVE_UNROLL_VECS
            for (int v = 0; v < kVecs; ++v) {
                even[v] = simd::fma(p0, load_kv(dim_mask[v], row0 + kLanes * v), even[v]);
                odd[v] = simd::fma(p1, load_kv(dim_mask[v], row1 + kLanes * v), odd[v]);
            }
        }
        if (t < length) {
            const Element* row0 = value_row(t, d0);
            const Vf p0 = simd::set1(scores[t]);
            LLMSERVE_UNROLL_VECS
            for (int v = 0; v < kVecs; ++v)
                even[v] = simd::fma(p0, load_kv(dim_mask[v], row0 + kLanes * v), even[v]);
        }
        LLMSERVE_UNROLL_VECS
        for (int v = 0; v < kVecs; ++v)
            simd::store(dim_mask[v], dst + d0 + kLanes * v,
                        simd::mul(simd::add(even[v], odd[v]), inverse));
    }
}

template <typename Element>
void attention_rows(const AttentionArgs& a, const AttentionTile& tile) {
    const bool decode = tile.rows == 1 && a.positions[tile.first_row] < kMaxStackContext;
    if (kLanes > 1 && a.head_dim <= kMaxHeadDim && !(kThreePassDecode && decode)) {
        with_rows<kAttentionTileRows>(
            tile.rows, [&](auto rows) { attention_tile<Element, decltype(rows)::value>(a, tile); });
        return;
    }
    alignas(64) float stack_scores[kMaxStackContext];
    for (int i = 0; i < tile.rows; ++i) {
        const int row = tile.first_row + i;
        const int length = a.positions[row] + 1;
        float* scores = length <= kMaxStackContext ? stack_scores : attention_scratch(length);
        attention_row<Element>(a, tile, row, scores);
    }
}

void attention(const AttentionArgs& a, const AttentionTile& tile) {
    if (a.kv_format == KvFormat::kF16)
        attention_rows<std::uint16_t>(a, tile);
    else
        attention_rows<float>(a, tile);
}

}  // namespace

#if LLMSERVE_KERNEL_ISA == 2
const KernelTable& avx512_kernels() {
    constexpr Isa kIsa = Isa::kAvx512;
#elif LLMSERVE_KERNEL_ISA == 1
const KernelTable& avx2_kernels() {
    constexpr Isa kIsa = Isa::kAvx2;
#else
const KernelTable& scalar_kernels() {
    constexpr Isa kIsa = Isa::kScalar;
#endif
    static const KernelTable table{
        .isa = kIsa,
        .gemm_f32 = gemm_float<WeightFormat::kF32>,
        .gemm_f16 = gemm_float<WeightFormat::kF16>,
        .gemm_bf16 = gemm_float<WeightFormat::kBF16>,
        .gemm_q8 = gemm_quantized<WeightFormat::kQ8>,
        .gemm_q4 = gemm_quantized<WeightFormat::kQ4>,
        .quantize_rows = quantize_rows,
        .layer_norm = layer_norm,
        .activation = activation,
        .add = add,
        .attention = attention,
        .sum = sum,
        .f16_to_f32 = f16_to_f32,
        .bf16_to_f32 = bf16_to_f32,
        .f32_to_f16 = f32_to_f16,
    };
    return table;
}

}  // namespace llmserve::backend::cpu
