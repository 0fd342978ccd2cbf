// AVX-512 kernels (F, BW, DQ, VL, VNNI), compiled with those flags for this file only and called
// only when cpuid reports them. Everything here has internal linkage and uses no std templates, so
// no AVX-512 code can be merged into the rest of the program by the linker.
// GCC 12 reports its own _mm512_undefined_* helpers as uninitialised when they are inlined
// (GCC bug 105593); the pragma covers the intrinsic headers only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

#include <math.h>
#include <stdlib.h>
#include <cstring>

#include "backend/cpu/kernels.h"

namespace llmserve::backend::cpu {
namespace {

constexpr int kGemmRows = 12;  // rows per f32/f16/bf16 tile: 24 accumulators + 2 weights + 1 x
constexpr int kQ8Rows = 4;     // rows per q8 tile: 8 int32 + 8 float accumulators
constexpr int kMaxHeadDim = 256;
constexpr int kMaxDecodeContext = 4096;  // scores of one decode row kept on the stack (16 KiB)

inline int min_int(int a, int b) {
    return a < b ? a : b;
}

inline __mmask16 lane_mask(int count) {  // the first `count` (clamped to [0, 16]) lanes
    if (count <= 0) return 0;
    if (count >= 16) return 0xffff;
    return static_cast<__mmask16>((1u << count) - 1u);
}

// e^x for every lane, relative error ~2 ulp; x below -100 gives 0.
inline __m512 exp_ps(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-100.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

inline __m512 tanh_ps(__m512 u) {  // 1 - 2 / (e^{2u} + 1)
    const __m512 e = exp_ps(_mm512_add_ps(u, u));
    return _mm512_sub_ps(
        _mm512_set1_ps(1.0f),
        _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
}

// ---- matrix products -------------------------------------------------------------------------

// The 32 weights of k row `kk` of a panel as two f32 vectors.
template <WeightFormat F>
inline void load_weights(const std::byte* panel, int kk, __m512& lo, __m512& hi) {
    if constexpr (F == WeightFormat::kF32) {
        const float* p =
            reinterpret_cast<const float*>(panel) + static_cast<std::size_t>(kk) * kPanelWidth;
        lo = _mm512_load_ps(p);
        hi = _mm512_load_ps(p + 16);
    } else {
        const auto* p = reinterpret_cast<const __m256i*>(panel) + static_cast<std::size_t>(kk) * 2;
        const __m256i a = _mm256_load_si256(p), b = _mm256_load_si256(p + 1);
        if constexpr (F == WeightFormat::kF16) {
            lo = _mm512_cvtph_ps(a);
            hi = _mm512_cvtph_ps(b);
        } else {  // bf16: the top half of an f32
            lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(a), 16));
            hi = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
        }
    }
}

struct ColumnMasks {
    __mmask16 lo, hi;
};
inline ColumnMasks column_masks(const GemmArgs& a, int n0) {
    const int width = min_int(kPanelWidth, a.w->n - n0);
    return {lane_mask(width), lane_mask(width - 16)};
}

template <int Rows>
inline void store_rows(const GemmArgs& a, int row0, int n0, __m512 (&acc)[Rows][2]) {
    const ColumnMasks m = column_masks(a, n0);
    __m512 bias_lo = _mm512_setzero_ps(), bias_hi = _mm512_setzero_ps();
    if (a.bias != nullptr) {
        bias_lo = _mm512_maskz_loadu_ps(m.lo, a.bias + n0);
        bias_hi = _mm512_maskz_loadu_ps(m.hi, a.bias + n0 + 16);
    }
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) {
        float* y = a.y + static_cast<std::size_t>(row0 + r) * a.y_stride + n0;
        __m512 lo = _mm512_add_ps(acc[r][0], bias_lo), hi = _mm512_add_ps(acc[r][1], bias_hi);
        if (a.accumulate) {
            lo = _mm512_add_ps(_mm512_maskz_loadu_ps(m.lo, y), lo);
            hi = _mm512_add_ps(_mm512_maskz_loadu_ps(m.hi, y + 16), hi);
        }
        _mm512_mask_storeu_ps(y, m.lo, lo);
        _mm512_mask_storeu_ps(y + 16, m.hi, hi);
    }
}

// y[row0 .. row0+Rows, n0 .. n0+32) for one panel: broadcast x, two weight vectors per k.
template <WeightFormat F, int Rows>
void float_tile(const GemmArgs& a, const std::byte* panel, int row0, int n0) {
    __m512 acc[Rows][2];
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const float* x = a.x + static_cast<std::size_t>(row0) * a.x_stride;
    const std::size_t stride = a.x_stride;
    for (int kk = 0; kk < a.w->k; ++kk) {
        __m512 lo, hi;
        load_weights<F>(panel, kk, lo, hi);
#pragma GCC unroll 16
        for (int r = 0; r < Rows; ++r) {
            const __m512 xr = _mm512_set1_ps(x[r * stride + kk]);
            acc[r][0] = _mm512_fmadd_ps(xr, lo, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(xr, hi, acc[r][1]);
        }
    }
    store_rows<Rows>(a, row0, n0, acc);
}

// Every row tile of one panel whose weights are stored as F.
template <WeightFormat F>
void panel_rows(const GemmArgs& a, const std::byte* panel, int n0) {
    int row0 = 0;
    for (; row0 + kGemmRows <= a.m; row0 += kGemmRows) float_tile<F, kGemmRows>(a, panel, row0, n0);
    switch (a.m - row0) {
        case 1:
            float_tile<F, 1>(a, panel, row0, n0);
            break;
        case 2:
            float_tile<F, 2>(a, panel, row0, n0);
            break;
        case 3:
            float_tile<F, 3>(a, panel, row0, n0);
            break;
        case 4:
            float_tile<F, 4>(a, panel, row0, n0);
            break;
        case 5:
            float_tile<F, 5>(a, panel, row0, n0);
            break;
        case 6:
            float_tile<F, 6>(a, panel, row0, n0);
            break;
        case 7:
            float_tile<F, 7>(a, panel, row0, n0);
            break;
        case 8:
            float_tile<F, 8>(a, panel, row0, n0);
            break;
        case 9:
            float_tile<F, 9>(a, panel, row0, n0);
            break;
        case 10:
            float_tile<F, 10>(a, panel, row0, n0);
            break;
        case 11:
            float_tile<F, 11>(a, panel, row0, n0);
            break;
        default:
            break;
    }
}

// 16-bit weights are widened once per panel into an f32 copy (it stays in L2) when enough row
// tiles reuse it; decode-sized products widen in registers instead.
constexpr int kWidenRows = 2 * kGemmRows;

template <WeightFormat F>
void gemm_float(const GemmArgs& a, int panel_begin, int panel_end) {
    float* const widened = F != WeightFormat::kF32 && a.m >= kWidenRows ? a.panel_scratch : nullptr;
    for (int p = panel_begin; p < panel_end; ++p) {
        const std::byte* panel = a.w->panel(p);
        const int n0 = p * kPanelWidth;
        if (widened == nullptr) {
            panel_rows<F>(a, panel, n0);
            continue;
        }
        for (int kk = 0; kk < a.w->k; ++kk) {
            __m512 lo, hi;
            load_weights<F>(panel, kk, lo, hi);
            _mm512_store_ps(widened + static_cast<std::size_t>(kk) * kPanelWidth, lo);
            _mm512_store_ps(widened + static_cast<std::size_t>(kk) * kPanelWidth + 16, hi);
        }
        panel_rows<WeightFormat::kF32>(a, reinterpret_cast<const std::byte*>(widened), n0);
    }
}

// q8: per block, int32 dot products of the +128-offset weights (unsigned) with the quantized
// activations (signed) by VNNI, started from -128 * sum(q) so they equal sum(w * q); then scaled
// by d_w * d_x into float accumulators.
template <int Rows>
void q8_tile(const GemmArgs& a, const std::byte* panel, int row0, int n0) {
    const QuantizedRows& xq = *a.xq;
    const int blocks = a.w->q8_blocks();
    __m512 acc[Rows][2];
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int b = 0; b < blocks; ++b) {
        const std::byte* block = panel + static_cast<std::size_t>(b) * kQ8BlockBytes;
        const auto* weights = reinterpret_cast<const __m512i*>(block + kQ8ScaleBytes);
        __m512i dot[Rows][2];
        const std::int8_t* x[Rows];
#pragma GCC unroll 8
        for (int r = 0; r < Rows; ++r) {
            const std::size_t slot = static_cast<std::size_t>(row0 + r) * xq.blocks + b;
            dot[r][0] = dot[r][1] = _mm512_set1_epi32(xq.offsets[slot]);
            x[r] = xq.values + slot * kQ8Block;
        }
#pragma GCC unroll 8
        for (int quad = 0; quad < kQ8Block / 4; ++quad) {
            const __m512i w0 = _mm512_load_si512(weights + 2 * quad);
            const __m512i w1 = _mm512_load_si512(weights + 2 * quad + 1);
#pragma GCC unroll 8
            for (int r = 0; r < Rows; ++r) {
                std::int32_t four;
                std::memcpy(&four, x[r] + 4 * quad, sizeof(four));
                const __m512i xr = _mm512_set1_epi32(four);
                dot[r][0] = _mm512_dpbusd_epi32(dot[r][0], w0, xr);
                dot[r][1] = _mm512_dpbusd_epi32(dot[r][1], w1, xr);
            }
        }
        const __m512 scale_lo =
            _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(block)));
        const __m512 scale_hi =
            _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(block) + 1));
#pragma GCC unroll 8
        for (int r = 0; r < Rows; ++r) {
            const __m512 dx =
                _mm512_set1_ps(xq.scales[static_cast<std::size_t>(row0 + r) * xq.blocks + b]);
            acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][0]), _mm512_mul_ps(scale_lo, dx),
                                        acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][1]), _mm512_mul_ps(scale_hi, dx),
                                        acc[r][1]);
        }
    }
    store_rows<Rows>(a, row0, n0, acc);
}

void gemm_q8(const GemmArgs& a, int panel_begin, int panel_end) {
    for (int p = panel_begin; p < panel_end; ++p) {
        const std::byte* panel = a.w->panel(p);
        const int n0 = p * kPanelWidth;
        int row0 = 0;
        for (; row0 + kQ8Rows <= a.m; row0 += kQ8Rows) q8_tile<kQ8Rows>(a, panel, row0, n0);
        switch (a.m - row0) {
            case 1:
                q8_tile<1>(a, panel, row0, n0);
                break;
            case 2:
                q8_tile<2>(a, panel, row0, n0);
                break;
            case 3:
                q8_tile<3>(a, panel, row0, n0);
                break;
            default:
                break;
        }
    }
}

void quantize_rows(const float* x, int x_stride, int k, int row_begin, int row_end,
                   const QuantizedRows& out) {
    for (int r = row_begin; r < row_end; ++r) {
        const float* row = x + static_cast<std::size_t>(r) * x_stride;
        for (int b = 0; b < out.blocks; ++b) {
            const int begin = b * kQ8Block;
            const __mmask16 m0 = lane_mask(k - begin), m1 = lane_mask(k - begin - 16);
            const __m512 v0 = _mm512_maskz_loadu_ps(m0, row + begin);
            const __m512 v1 = _mm512_maskz_loadu_ps(m1, row + begin + 16);
            const float amax =
                _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            const float inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
            const __m512i limit = _mm512_set1_epi32(127);
            auto quantize = [&](__m512 v) {
                const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v, _mm512_set1_ps(inverse)));
                return _mm512_max_epi32(_mm512_min_epi32(q, limit),
                                        _mm512_sub_epi32(_mm512_setzero_si512(), limit));
            };
            const __m512i q0 = quantize(v0), q1 = quantize(v1);
            const std::size_t slot = static_cast<std::size_t>(r) * out.blocks + b;
            std::int8_t* q = out.values + slot * kQ8Block;
            _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtepi32_epi8(q1));
            out.scales[slot] = amax / 127.0f;
            out.offsets[slot] = -kQ8Offset * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        }
    }
}

// ---- element-wise -----------------------------------------------------------------------------

void layer_norm(const float* x, const float* gamma, const float* beta, float eps, int cols,
                float* y) {
    __m512 sum = _mm512_setzero_ps();
    for (int c = 0; c < cols; c += 16)
        sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(lane_mask(cols - c), x + c));
    const float mean = _mm512_reduce_add_ps(sum) / static_cast<float>(cols);
    const __m512 mean_v = _mm512_set1_ps(mean);
    __m512 squares = _mm512_setzero_ps();
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 m = lane_mask(cols - c);
        const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + c), mean_v);
        squares = _mm512_fmadd_ps(d, d, squares);
    }
    const float inv_std =
        1.0f / ::sqrtf(_mm512_reduce_add_ps(squares) / static_cast<float>(cols) + eps);
    const __m512 inv_std_v = _mm512_set1_ps(inv_std);
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 m = lane_mask(cols - c);
        const __m512 d =
            _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + c), mean_v), inv_std_v);
        const __m512 out = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, gamma + c),
                                           _mm512_maskz_loadu_ps(m, beta + c));
        _mm512_mask_storeu_ps(y + c, m, out);
    }
}

inline __m512 activate(Activation kind, __m512 x) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    const __m512 sqrt_2_over_pi = _mm512_set1_ps(0.7978845608028654f),
                 c = _mm512_set1_ps(0.044715f);
    switch (kind) {
        case Activation::kGeluNew: {  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            const __m512 inner = _mm512_mul_ps(
                sqrt_2_over_pi, _mm512_fmadd_ps(_mm512_mul_ps(c, x), _mm512_mul_ps(x, x), x));
            return _mm512_mul_ps(_mm512_mul_ps(half, x), _mm512_add_ps(one, tanh_ps(inner)));
        }
        case Activation::kGeluFast: {  // 0.5 x (1 + tanh(x sqrt(2/pi) (1 + 0.044715 x^2)))
            const __m512 inner = _mm512_mul_ps(_mm512_mul_ps(x, sqrt_2_over_pi),
                                               _mm512_fmadd_ps(c, _mm512_mul_ps(x, x), one));
            return _mm512_mul_ps(_mm512_mul_ps(half, x), _mm512_add_ps(one, tanh_ps(inner)));
        }
        case Activation::kRelu:
            return _mm512_max_ps(x, _mm512_setzero_ps());
        case Activation::kSilu:
            return _mm512_div_ps(x,
                                 _mm512_add_ps(one, exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), x))));
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
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_ps(x + i, activate(kind, _mm512_loadu_ps(x + i)));
    if (i < count) {
        const __mmask16 m = lane_mask(static_cast<int>(count - i));
        _mm512_mask_storeu_ps(x + i, m, activate(kind, _mm512_maskz_loadu_ps(m, x + i)));
    }
}

void add(float* x, const float* y, std::size_t count) {
    std::size_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_ps(x + i, _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < count) {
        const __mmask16 m = lane_mask(static_cast<int>(count - i));
        _mm512_mask_storeu_ps(
            x + i, m,
            _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

// ---- attention -------------------------------------------------------------------------------

// Up to 16 KV elements (lanes outside `mask` are zero and not read), as f32.
inline __m512 load_kv(__mmask16 mask, const float* p) {
    return _mm512_maskz_loadu_ps(mask, p);
}
inline __m512 load_kv(__mmask16 mask, const std::uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p));
}

// Flash-attention style over 16-key chunks: scores for Rows queries at once, an online softmax
// (running max and sum per row, earlier output rescaled when the max grows), then P·V. Enough
// independent FMA chains even for one row (decode): q·k is split into kSets partial sums, and
// P·V accumulates 64 dimensions (4 vectors) per row at once.
template <typename Element, int Rows>
void attention_tile(const AttentionArgs& a, const AttentionTile& tile) {
    constexpr int kSets = Rows == 1 ? 4 : 2;
    constexpr int kGroup = 4;  // value vectors per pass: 64 dimensions
    const int hd = a.head_dim, bt = a.block_tokens;
    const int head_offset = tile.head * hd;
    const int kv_offset = tile.head / a.group * hd;  // the query head's key/value head
    const float* q[Rows];
    int position[Rows];
    float running_max[Rows], running_sum[Rows];
    alignas(64) float out[Rows][kMaxHeadDim];  // whole groups: zero beyond hd
    alignas(64) float weights[Rows][16];
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i) {
        const int row = tile.first_row + i;
        q[i] = a.qkv + static_cast<std::size_t>(row) * a.qkv_stride + head_offset;
        position[i] = a.positions[row];
        running_max[i] = -INFINITY;
        running_sum[i] = 0.0f;
        for (int d = 0; d < kMaxHeadDim; d += 16) _mm512_store_ps(out[i] + d, _mm512_setzero_ps());
    }
    const int last = position[Rows - 1];  // rows are consecutive positions: the last sees most
    for (int start = tile.first_key, keys_here = 0; start <= last; start += keys_here) {
        const int block = start / bt, chunk = start % bt;
        // A chunk never crosses a block: it ends at the block's end when bt is not a multiple
        // of 16.
        keys_here = min_int(min_int(16, bt - chunk), last + 1 - start);
        const Element* base =
            static_cast<const Element*>(a.kv_blocks) + tile.block_table[block] * a.block_stride;
        const Element* keys = base + static_cast<std::size_t>(kv_offset) * bt + chunk;
        const Element* values = base + static_cast<std::size_t>(bt) * a.kv_dim +
                                static_cast<std::size_t>(chunk) * a.kv_dim + kv_offset;
        const __mmask16 key_mask = lane_mask(keys_here);

        __m512 partial[kSets][Rows];
#pragma GCC unroll 4
        for (int set = 0; set < kSets; ++set)
#pragma GCC unroll 4
            for (int i = 0; i < Rows; ++i) partial[set][i] = _mm512_setzero_ps();
        int d = 0;
        for (; d + kSets <= hd; d += kSets) {
#pragma GCC unroll 4
            for (int set = 0; set < kSets; ++set) {
                const __m512 k = load_kv(key_mask, keys + static_cast<std::size_t>(d + set) * bt);
#pragma GCC unroll 4
                for (int i = 0; i < Rows; ++i)
                    partial[set][i] =
                        _mm512_fmadd_ps(_mm512_set1_ps(q[i][d + set]), k, partial[set][i]);
            }
        }
        for (; d < hd; ++d) {
            const __m512 k = load_kv(key_mask, keys + static_cast<std::size_t>(d) * bt);
#pragma GCC unroll 4
            for (int i = 0; i < Rows; ++i)
                partial[0][i] = _mm512_fmadd_ps(_mm512_set1_ps(q[i][d]), k, partial[0][i]);
        }
        float rescale[Rows];
#pragma GCC unroll 4
        for (int i = 0; i < Rows; ++i) {
            const __mmask16 visible = key_mask & lane_mask(position[i] + 1 - start);
            rescale[i] = 1.0f;
            if (visible == 0) {
                _mm512_store_ps(weights[i], _mm512_setzero_ps());
                continue;
            }
            __m512 dot = partial[0][i];
#pragma GCC unroll 4
            for (int set = 1; set < kSets; ++set) dot = _mm512_add_ps(dot, partial[set][i]);
            const __m512 s = _mm512_mul_ps(dot, _mm512_set1_ps(a.scale));
            const float chunk_max = _mm512_mask_reduce_max_ps(visible, s);
            const float new_max = chunk_max > running_max[i] ? chunk_max : running_max[i];
            rescale[i] = ::expf(running_max[i] - new_max);
            const __m512 p =
                _mm512_maskz_mov_ps(visible, exp_ps(_mm512_sub_ps(s, _mm512_set1_ps(new_max))));
            running_sum[i] = running_sum[i] * rescale[i] + _mm512_reduce_add_ps(p);
            running_max[i] = new_max;
            _mm512_store_ps(weights[i], p);
        }
        for (int d0 = 0; d0 < hd; d0 += 16 * kGroup) {
            __mmask16 dim_mask[kGroup];
            __m512 o[Rows][kGroup];
#pragma GCC unroll 4
            for (int v = 0; v < kGroup; ++v) dim_mask[v] = lane_mask(hd - d0 - 16 * v);
#pragma GCC unroll 4
            for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 4
                for (int v = 0; v < kGroup; ++v)
                    o[i][v] = _mm512_mul_ps(_mm512_load_ps(out[i] + d0 + 16 * v),
                                            _mm512_set1_ps(rescale[i]));
            for (int t = 0; t < keys_here; ++t) {
                const Element* row = values + static_cast<std::size_t>(t) * a.kv_dim + d0;
                __m512 value[kGroup];
#pragma GCC unroll 4
                for (int v = 0; v < kGroup; ++v) value[v] = load_kv(dim_mask[v], row + 16 * v);
#pragma GCC unroll 4
                for (int i = 0; i < Rows; ++i) {
                    const __m512 weight = _mm512_set1_ps(weights[i][t]);
#pragma GCC unroll 4
                    for (int v = 0; v < kGroup; ++v)
                        o[i][v] = _mm512_fmadd_ps(weight, value[v], o[i][v]);
                }
            }
#pragma GCC unroll 4
            for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 4
                for (int v = 0; v < kGroup; ++v) _mm512_store_ps(out[i] + d0 + 16 * v, o[i][v]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i) {
        float* dst =
            a.out + static_cast<std::size_t>(tile.first_row + i) * a.out_stride + head_offset;
        const __m512 inverse = _mm512_set1_ps(1.0f / running_sum[i]);
        for (int d = 0; d < hd; d += 16)
            _mm512_mask_storeu_ps(dst + d, lane_mask(hd - d),
                                  _mm512_mul_ps(_mm512_load_ps(out[i] + d), inverse));
    }
}

// One query row (decode) in three passes, so that no step waits on a running maximum: every
// score (q·k split into 4 partial sums), then their softmax, then P·V with two interleaved
// sets of 64-dimension accumulators.
template <typename Element>
void decode_attention(const AttentionArgs& a, const AttentionTile& tile, float* scores) {
    const int hd = a.head_dim, bt = a.block_tokens;
    const int head_offset = tile.head * hd;
    const int kv_offset = tile.head / a.group * hd;  // the query head's key/value head
    const float* q = a.qkv + static_cast<std::size_t>(tile.first_row) * a.qkv_stride + head_offset;
    const int length = a.positions[tile.first_row] + 1;
    __m512 max_v = _mm512_set1_ps(-INFINITY);
    for (int start = tile.first_key, keys_here = 0; start < length; start += keys_here) {
        const int chunk = start % bt;
        keys_here = min_int(min_int(16, bt - chunk), length - start);
        const Element* keys = static_cast<const Element*>(a.kv_blocks) +
                              tile.block_table[start / bt] * a.block_stride +
                              static_cast<std::size_t>(kv_offset) * bt + chunk;
        const __mmask16 mask = lane_mask(keys_here);
        __m512 partial[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                             _mm512_setzero_ps()};
        int d = 0;
        for (; d + 4 <= hd; d += 4)
#pragma GCC unroll 4
            for (int set = 0; set < 4; ++set)
                partial[set] = _mm512_fmadd_ps(
                    _mm512_set1_ps(q[d + set]),
                    load_kv(mask, keys + static_cast<std::size_t>(d + set) * bt), partial[set]);
        for (; d < hd; ++d)
            partial[0] =
                _mm512_fmadd_ps(_mm512_set1_ps(q[d]),
                                load_kv(mask, keys + static_cast<std::size_t>(d) * bt), partial[0]);
        const __m512 s = _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(partial[0], partial[1]),
                                                     _mm512_add_ps(partial[2], partial[3])),
                                       _mm512_set1_ps(a.scale));
        _mm512_mask_storeu_ps(scores + start, mask, s);
        max_v = _mm512_mask_max_ps(max_v, mask, max_v, s);
    }
    const __m512 max_score = _mm512_set1_ps(_mm512_reduce_max_ps(max_v));
    __m512 sum_v = _mm512_setzero_ps();
    for (int t = tile.first_key; t < length; t += 16) {
        const __mmask16 mask = lane_mask(length - t);
        const __m512 p = _mm512_maskz_mov_ps(
            mask, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, scores + t), max_score)));
        _mm512_mask_storeu_ps(scores + t, mask, p);
        sum_v = _mm512_add_ps(sum_v, p);
    }
    const __m512 inverse = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum_v));
    float* dst = a.out + static_cast<std::size_t>(tile.first_row) * a.out_stride + head_offset;
    for (int d0 = 0; d0 < hd; d0 += 64) {
        __mmask16 dim_mask[4];
        __m512 even[4], odd[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
            dim_mask[v] = lane_mask(hd - d0 - 16 * v);
            even[v] = odd[v] = _mm512_setzero_ps();
        }
        auto value_row = [&](int t) {
            return static_cast<const Element*>(a.kv_blocks) +
                   tile.block_table[t / bt] * a.block_stride +
                   static_cast<std::size_t>(bt) * a.kv_dim +
                   static_cast<std::size_t>(t % bt) * a.kv_dim + kv_offset + d0;
        };
        int t = tile.first_key;
        for (; t + 2 <= length; t += 2) {
            const Element* row0 = value_row(t);
            const Element* row1 = value_row(t + 1);
            const __m512 p0 = _mm512_set1_ps(scores[t]), p1 = _mm512_set1_ps(scores[t + 1]);
#pragma GCC unroll 4
            for (int v = 0; v < 4; ++v) {
                even[v] = _mm512_fmadd_ps(p0, load_kv(dim_mask[v], row0 + 16 * v), even[v]);
                odd[v] = _mm512_fmadd_ps(p1, load_kv(dim_mask[v], row1 + 16 * v), odd[v]);
            }
        }
        if (t < length) {
            const Element* row0 = value_row(t);
            const __m512 p0 = _mm512_set1_ps(scores[t]);
#pragma GCC unroll 4
            for (int v = 0; v < 4; ++v)
                even[v] = _mm512_fmadd_ps(p0, load_kv(dim_mask[v], row0 + 16 * v), even[v]);
        }
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v)
            _mm512_mask_storeu_ps(dst + d0 + 16 * v, dim_mask[v],
                                  _mm512_mul_ps(_mm512_add_ps(even[v], odd[v]), inverse));
    }
}

template <typename Element>
void attention_rows(const AttentionArgs& a, const AttentionTile& tile) {
    alignas(64) float scores[kMaxDecodeContext];
    if (tile.rows == 1 && a.positions[tile.first_row] < kMaxDecodeContext) {
        decode_attention<Element>(a, tile, scores);
        return;
    }
    if (a.head_dim > kMaxHeadDim) {
        scalar_kernels().attention(a, tile);
        return;
    }
    switch (tile.rows) {
        case 1:
            attention_tile<Element, 1>(a, tile);
            break;
        case 2:
            attention_tile<Element, 2>(a, tile);
            break;
        case 3:
            attention_tile<Element, 3>(a, tile);
            break;
        default:
            attention_tile<Element, 4>(a, tile);
            break;
    }
}

void attention(const AttentionArgs& a, const AttentionTile& tile) {
    if (a.kv_format == KvFormat::kF16)
        attention_rows<std::uint16_t>(a, tile);
    else
        attention_rows<float>(a, tile);
}

float sum(const float* x, std::size_t count) {
    __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;  // independent chains
    std::size_t i = 0;
    for (; i + 64 <= count; i += 64) {
        a = _mm512_add_ps(a, _mm512_loadu_ps(x + i));
        b = _mm512_add_ps(b, _mm512_loadu_ps(x + i + 16));
        c = _mm512_add_ps(c, _mm512_loadu_ps(x + i + 32));
        d = _mm512_add_ps(d, _mm512_loadu_ps(x + i + 48));
    }
    for (; i < count; i += 16)
        a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(lane_mask(static_cast<int>(count - i)), x + i));
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

// ---- conversions -----------------------------------------------------------------------------

void f16_to_f32(const std::uint16_t* src, std::size_t count, float* dst) {
    std::size_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_ps(
            dst + i,
            _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
    if (i < count) {
        const __mmask16 m = lane_mask(static_cast<int>(count - i));
        _mm512_mask_storeu_ps(dst + i, m, load_kv(m, src + i));
    }
}

void f32_to_f16(const float* src, std::size_t count, std::uint16_t* dst) {
    std::size_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < count) {
        const __mmask16 m = lane_mask(static_cast<int>(count - i));
        _mm256_mask_storeu_epi16(
            dst + i, m,
            _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i), _MM_FROUND_TO_NEAREST_INT));
    }
}

void bf16_to_f32(const std::uint16_t* src, std::size_t count, float* dst) {
    auto widen = [](__m256i v) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
    };
    std::size_t i = 0;
    for (; i + 16 <= count; i += 16)
        _mm512_storeu_ps(dst + i,
                         widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
    if (i < count) {
        const __mmask16 m = lane_mask(static_cast<int>(count - i));
        _mm512_mask_storeu_ps(dst + i, m, widen(_mm256_maskz_loadu_epi16(m, src + i)));
    }
}

}  // namespace

const KernelTable& avx512_kernels() {
    static const KernelTable table{
        .isa = Isa::kAvx512,
        .gemm_f32 = gemm_float<WeightFormat::kF32>,
        .gemm_f16 = gemm_float<WeightFormat::kF16>,
        .gemm_bf16 = gemm_float<WeightFormat::kBF16>,
        .gemm_q8 = gemm_q8,
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
