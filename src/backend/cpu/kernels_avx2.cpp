// AVX2 + FMA + F16C kernels, compiled with those flags for this file only and called only when
// cpuid reports them. Internal linkage and no std templates, so none of this code can be merged
// into the rest of the program by the linker.
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
#include "backend/cpu/packed_matrix.h"

namespace llmserve::backend::cpu {
namespace {

constexpr int kGemmRows = 6;  // rows per half-panel tile: 12 accumulators + 2 weights + 1 x
constexpr int kMaxHeadDim = 256;

inline int min_int(int a, int b) {
    return a < b ? a : b;
}

inline __m256i lane_mask(int count) {  // all-ones in the first `count` lanes
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline __m256 masked_load(const float* p, int count) {
    return count >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lane_mask(count));
}

// The first `count` (at most 8 read) f16 values of p, widened; zeros in the other lanes.
inline __m256 masked_load(const std::uint16_t* p, int count) {
    if (count >= 8) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    alignas(16) std::uint16_t part[8] = {};
    for (int i = 0; i < count; ++i) part[i] = p[i];
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(part)));
}

inline void masked_store(float* p, int count, __m256 v) {
    if (count >= 8) {
        _mm256_storeu_ps(p, v);
    } else if (count > 0) {
        _mm256_maskstore_ps(p, lane_mask(count), v);
    }
}

inline float reduce_add(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline float reduce_max(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline int reduce_add_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

// e^x for every lane, relative error ~2 ulp for x in [-87.3, 88.3] (clamped outside).
inline __m256 exp_ps(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3f)), _mm256_set1_ps(-87.3f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i exponent =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(exponent));
}

inline __m256 tanh_ps(__m256 u) {  // 1 - 2 / (e^{2u} + 1)
    const __m256 e = exp_ps(_mm256_add_ps(u, u));
    return _mm256_sub_ps(
        _mm256_set1_ps(1.0f),
        _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
}

// ---- matrix products -------------------------------------------------------------------------

// Weights kk, columns [col, col + 8) of a panel as f32.
template <WeightFormat F>
inline __m256 load_weights(const std::byte* panel, int kk, int col) {
    const std::size_t index = static_cast<std::size_t>(kk) * kPanelWidth + col;
    if constexpr (F == WeightFormat::kF32) {
        return _mm256_load_ps(reinterpret_cast<const float*>(panel) + index);
    } else {
        const __m128i h = _mm_load_si128(reinterpret_cast<const __m128i*>(panel + index * 2));
        if constexpr (F == WeightFormat::kF16) return _mm256_cvtph_ps(h);
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
}

// Columns [col0, col0 + 8 Vecs) of the panel at n0 for rows [row0, row0 + Rows).
template <int Rows, int Vecs>
inline void store_rows(const GemmArgs& a, int row0, int n0, int col0, __m256 (&acc)[Rows][Vecs]) {
    const int width = a.w->n - n0 - col0;
    for (int v = 0; v < Vecs; ++v) {
        const int count = width - 8 * v;
        const __m256 bias = a.bias != nullptr && count > 0
                                ? masked_load(a.bias + n0 + col0 + 8 * v, count)
                                : _mm256_setzero_ps();
        for (int r = 0; r < Rows; ++r) {
            float* y = a.y + static_cast<std::size_t>(row0 + r) * a.y_stride + n0 + col0 + 8 * v;
            __m256 value = _mm256_add_ps(acc[r][v], bias);
            if (a.accumulate) value = _mm256_add_ps(masked_load(y, count), value);
            masked_store(y, count, value);
        }
    }
}

template <WeightFormat F, int Rows, int Vecs>
void float_tile(const GemmArgs& a, const std::byte* panel, int row0, int n0, int col0) {
    __m256 acc[Rows][Vecs];
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < Vecs; ++v) acc[r][v] = _mm256_setzero_ps();
    const float* x = a.x + static_cast<std::size_t>(row0) * a.x_stride;
    const std::size_t stride = a.x_stride;
    for (int kk = 0; kk < a.w->k; ++kk) {
        __m256 w[Vecs];
#pragma GCC unroll 4
        for (int v = 0; v < Vecs; ++v) w[v] = load_weights<F>(panel, kk, col0 + 8 * v);
#pragma GCC unroll 8
        for (int r = 0; r < Rows; ++r) {
            const __m256 xr = _mm256_set1_ps(x[r * stride + kk]);
#pragma GCC unroll 4
            for (int v = 0; v < Vecs; ++v) acc[r][v] = _mm256_fmadd_ps(xr, w[v], acc[r][v]);
        }
    }
    store_rows<Rows, Vecs>(a, row0, n0, col0, acc);
}

// Every row tile of one panel whose weights are stored as F, in two 16-column halves.
template <WeightFormat F>
void panel_rows(const GemmArgs& a, const std::byte* panel, int n0) {
    for (int col0 = 0; col0 < kPanelWidth; col0 += 16) {
        int row0 = 0;
        for (; row0 + kGemmRows <= a.m; row0 += kGemmRows)
            float_tile<F, kGemmRows, 2>(a, panel, row0, n0, col0);
        switch (a.m - row0) {
            case 1:
                float_tile<F, 1, 2>(a, panel, row0, n0, col0);
                break;
            case 2:
                float_tile<F, 2, 2>(a, panel, row0, n0, col0);
                break;
            case 3:
                float_tile<F, 3, 2>(a, panel, row0, n0, col0);
                break;
            case 4:
                float_tile<F, 4, 2>(a, panel, row0, n0, col0);
                break;
            case 5:
                float_tile<F, 5, 2>(a, panel, row0, n0, col0);
                break;
            default:
                break;
        }
    }
}

// As the AVX-512 version: 16-bit weights widened once per panel when enough row tiles reuse them.
constexpr int kWidenRows = 4 * kGemmRows;

template <WeightFormat F>
void gemm_float(const GemmArgs& a, int panel_begin, int panel_end) {
    float* const widened = F != WeightFormat::kF32 && a.m >= kWidenRows ? a.panel_scratch : nullptr;
    for (int p = panel_begin; p < panel_end; ++p) {
        const std::byte* panel = a.w->panel(p);
        const int n0 = p * kPanelWidth;
        if (a.m <= 2) {  // decode: the whole panel at once
            if (a.m == 1)
                float_tile<F, 1, 4>(a, panel, 0, n0, 0);
            else
                float_tile<F, 2, 4>(a, panel, 0, n0, 0);
            continue;
        }
        if (widened == nullptr) {
            panel_rows<F>(a, panel, n0);
            continue;
        }
        for (int kk = 0; kk < a.w->k; ++kk)
            for (int col = 0; col < kPanelWidth; col += 8)
                _mm256_store_ps(widened + static_cast<std::size_t>(kk) * kPanelWidth + col,
                                load_weights<F>(panel, kk, col));
        panel_rows<WeightFormat::kF32>(a, reinterpret_cast<const std::byte*>(widened), n0);
    }
}

// q8 without VNNI: |x| (unsigned) times w carrying x's sign (signed) by maddubs, which cannot
// saturate since both magnitudes are at most 127; pairs then summed to int32 by madd.
void q8_row(const GemmArgs& a, const std::byte* panel, int row, int n0) {
    const QuantizedRows& xq = *a.xq;
    const int blocks = a.w->q8_blocks();
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80)), ones = _mm256_set1_epi16(1);
    __m256 acc[1][4] = {
        {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}};
    for (int b = 0; b < blocks; ++b) {
        const std::byte* block = panel + static_cast<std::size_t>(b) * kQ8BlockBytes;
        const std::size_t slot = static_cast<std::size_t>(row) * xq.blocks + b;
        const std::int8_t* x = xq.values + slot * kQ8Block;
        __m256i dot[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                          _mm256_setzero_si256()};
#pragma GCC unroll 8
        for (int quad = 0; quad < kQ8Block / 4; ++quad) {
            std::int32_t four;
            std::memcpy(&four, x + 4 * quad, sizeof(four));
            const __m256i xr = _mm256_set1_epi32(four);
            const __m256i magnitude = _mm256_abs_epi8(xr);
            const auto* w = reinterpret_cast<const __m256i*>(block + kQ8ScaleBytes) + quad * 4;
#pragma GCC unroll 4
            for (int v = 0; v < 4; ++v) {
                const __m256i signed_w =
                    _mm256_sign_epi8(_mm256_xor_si256(_mm256_load_si256(w + v), flip), xr);
                dot[v] = _mm256_add_epi32(
                    dot[v], _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, signed_w), ones));
            }
        }
        const __m256 dx = _mm256_set1_ps(xq.scales[slot]);
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
            const __m256 dw =
                _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(block) + v));
            acc[0][v] =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[v]), _mm256_mul_ps(dw, dx), acc[0][v]);
        }
    }
    store_rows<1, 4>(a, row, n0, 0, acc);
}

void gemm_q8(const GemmArgs& a, int panel_begin, int panel_end) {
    for (int p = panel_begin; p < panel_end; ++p)
        for (int row = 0; row < a.m; ++row) q8_row(a, a.w->panel(p), row, p * kPanelWidth);
}

void quantize_rows(const float* x, int x_stride, int k, int row_begin, int row_end,
                   const QuantizedRows& out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int r = row_begin; r < row_end; ++r) {
        const float* row = x + static_cast<std::size_t>(r) * x_stride;
        for (int b = 0; b < out.blocks; ++b) {
            const int begin = b * kQ8Block;
            __m256 v[4];
            __m256 amax_v = _mm256_setzero_ps();
            for (int i = 0; i < 4; ++i) {
                const int count = k - begin - 8 * i;
                v[i] = count > 0 ? masked_load(row + begin + 8 * i, count) : _mm256_setzero_ps();
                amax_v = _mm256_max_ps(amax_v, _mm256_andnot_ps(sign, v[i]));
            }
            const float amax = reduce_max(amax_v);
            const __m256 inverse = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
            const std::size_t slot = static_cast<std::size_t>(r) * out.blocks + b;
            alignas(32) std::int32_t q[kQ8Block];
            __m256i sum = _mm256_setzero_si256();
            for (int i = 0; i < 4; ++i) {
                __m256i qi = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inverse));
                qi = _mm256_max_epi32(_mm256_min_epi32(qi, _mm256_set1_epi32(127)),
                                      _mm256_set1_epi32(-127));
                _mm256_store_si256(reinterpret_cast<__m256i*>(q + 8 * i), qi);
                sum = _mm256_add_epi32(sum, qi);
            }
            for (int i = 0; i < kQ8Block; ++i)
                out.values[slot * kQ8Block + i] = static_cast<std::int8_t>(q[i]);
            out.scales[slot] = amax / 127.0f;
            out.offsets[slot] = -kQ8Offset * reduce_add_epi32(sum);
        }
    }
}

// ---- element-wise -----------------------------------------------------------------------------

void layer_norm(const float* x, const float* gamma, const float* beta, float eps, int cols,
                float* y) {
    __m256 sum = _mm256_setzero_ps();
    for (int c = 0; c < cols; c += 8) sum = _mm256_add_ps(sum, masked_load(x + c, cols - c));
    const float mean = reduce_add(sum) / static_cast<float>(cols);
    const __m256 mean_v = _mm256_set1_ps(mean);
    __m256 squares = _mm256_setzero_ps();
    for (int c = 0; c < cols; c += 8) {
        const __m256 valid = _mm256_castsi256_ps(lane_mask(cols - c));
        const __m256 d = _mm256_and_ps(valid, _mm256_sub_ps(masked_load(x + c, cols - c), mean_v));
        squares = _mm256_fmadd_ps(d, d, squares);
    }
    const __m256 inv_std =
        _mm256_set1_ps(1.0f / ::sqrtf(reduce_add(squares) / static_cast<float>(cols) + eps));
    for (int c = 0; c < cols; c += 8) {
        const int count = cols - c;
        const __m256 d = _mm256_mul_ps(_mm256_sub_ps(masked_load(x + c, count), mean_v), inv_std);
        masked_store(
            y + c, count,
            _mm256_fmadd_ps(d, masked_load(gamma + c, count), masked_load(beta + c, count)));
    }
}

inline __m256 activate(Activation kind, __m256 x) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256 sqrt_2_over_pi = _mm256_set1_ps(0.7978845608028654f),
                 c = _mm256_set1_ps(0.044715f);
    switch (kind) {
        case Activation::kGeluNew: {
            const __m256 inner = _mm256_mul_ps(
                sqrt_2_over_pi, _mm256_fmadd_ps(_mm256_mul_ps(c, x), _mm256_mul_ps(x, x), x));
            return _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, tanh_ps(inner)));
        }
        case Activation::kGeluFast: {
            const __m256 inner = _mm256_mul_ps(_mm256_mul_ps(x, sqrt_2_over_pi),
                                               _mm256_fmadd_ps(c, _mm256_mul_ps(x, x), one));
            return _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, tanh_ps(inner)));
        }
        case Activation::kRelu:
            return _mm256_max_ps(x, _mm256_setzero_ps());
        case Activation::kSilu:
            return _mm256_div_ps(x,
                                 _mm256_add_ps(one, exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x))));
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
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(x + i, activate(kind, _mm256_loadu_ps(x + i)));
    if (i < count) {
        const int rest = static_cast<int>(count - i);
        masked_store(x + i, rest, activate(kind, masked_load(x + i, rest)));
    }
}

void add(float* x, const float* y, std::size_t count) {
    std::size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < count; ++i) x[i] += y[i];
}

// ---- attention -------------------------------------------------------------------------------

// As the AVX-512 version, over 8-key chunks; P·V takes 32 dimensions at once for up to two rows
// and 16 for more (16 registers).
template <typename Element, int Rows>
void attention_tile(const AttentionArgs& a, const AttentionTile& tile) {
    constexpr int kSets = Rows == 1 ? 4 : 2;
    constexpr int kGroup = Rows <= 2 ? 4 : 2;
    const int hd = a.head_dim, bt = a.block_tokens;
    const int head_offset = tile.head * hd;
    const int kv_offset = tile.head / a.group * hd;  // the query head's key/value head
    const float* q[Rows];
    int position[Rows];
    float running_max[Rows], running_sum[Rows];
    alignas(32) float out[Rows][kMaxHeadDim];  // whole groups: zero beyond hd
    alignas(32) float weights[Rows][8];
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i) {
        const int row = tile.first_row + i;
        q[i] = a.qkv + static_cast<std::size_t>(row) * a.qkv_stride + head_offset;
        position[i] = a.positions[row];
        running_max[i] = -INFINITY;
        running_sum[i] = 0.0f;
        for (int d = 0; d < kMaxHeadDim; d += 8) _mm256_store_ps(out[i] + d, _mm256_setzero_ps());
    }
    const int last = position[Rows - 1];
    for (int start = tile.first_key, keys_here = 0; start <= last; start += keys_here) {
        const int block = start / bt, chunk = start % bt;
        keys_here = min_int(min_int(8, bt - chunk), last + 1 - start);
        const Element* base =
            static_cast<const Element*>(a.kv_blocks) + tile.block_table[block] * a.block_stride;
        const Element* keys = base + static_cast<std::size_t>(kv_offset) * bt + chunk;
        const Element* values = base + static_cast<std::size_t>(bt) * a.kv_dim +
                                static_cast<std::size_t>(chunk) * a.kv_dim + kv_offset;

        __m256 partial[kSets][Rows];
#pragma GCC unroll 4
        for (int set = 0; set < kSets; ++set)
#pragma GCC unroll 4
            for (int i = 0; i < Rows; ++i) partial[set][i] = _mm256_setzero_ps();
        int d = 0;
        for (; d + kSets <= hd; d += kSets) {
#pragma GCC unroll 4
            for (int set = 0; set < kSets; ++set) {
                const __m256 k =
                    masked_load(keys + static_cast<std::size_t>(d + set) * bt, keys_here);
#pragma GCC unroll 4
                for (int i = 0; i < Rows; ++i)
                    partial[set][i] =
                        _mm256_fmadd_ps(_mm256_set1_ps(q[i][d + set]), k, partial[set][i]);
            }
        }
        for (; d < hd; ++d) {
            const __m256 k = masked_load(keys + static_cast<std::size_t>(d) * bt, keys_here);
#pragma GCC unroll 4
            for (int i = 0; i < Rows; ++i)
                partial[0][i] = _mm256_fmadd_ps(_mm256_set1_ps(q[i][d]), k, partial[0][i]);
        }
        float rescale[Rows];
#pragma GCC unroll 4
        for (int i = 0; i < Rows; ++i) {
            const int visible = min_int(keys_here, position[i] + 1 - start);
            rescale[i] = 1.0f;
            if (visible <= 0) {
                _mm256_store_ps(weights[i], _mm256_setzero_ps());
                continue;
            }
            __m256 dot = partial[0][i];
#pragma GCC unroll 4
            for (int set = 1; set < kSets; ++set) dot = _mm256_add_ps(dot, partial[set][i]);
            const __m256 valid = _mm256_castsi256_ps(lane_mask(visible));
            const __m256 s = _mm256_mul_ps(dot, _mm256_set1_ps(a.scale));
            const float chunk_max =
                reduce_max(_mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, valid));
            const float new_max = chunk_max > running_max[i] ? chunk_max : running_max[i];
            rescale[i] = ::expf(running_max[i] - new_max);
            const __m256 p =
                _mm256_and_ps(valid, exp_ps(_mm256_sub_ps(s, _mm256_set1_ps(new_max))));
            running_sum[i] = running_sum[i] * rescale[i] + reduce_add(p);
            running_max[i] = new_max;
            _mm256_store_ps(weights[i], p);
        }
        for (int d0 = 0; d0 < hd; d0 += 8 * kGroup) {
            __m256 o[Rows][kGroup];
#pragma GCC unroll 4
            for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 4
                for (int v = 0; v < kGroup; ++v)
                    o[i][v] = _mm256_mul_ps(_mm256_load_ps(out[i] + d0 + 8 * v),
                                            _mm256_set1_ps(rescale[i]));
            for (int t = 0; t < keys_here; ++t) {
                const Element* row = values + static_cast<std::size_t>(t) * a.kv_dim + d0;
                __m256 value[kGroup];
#pragma GCC unroll 4
                for (int v = 0; v < kGroup; ++v)
                    value[v] = masked_load(row + 8 * v, hd - d0 - 8 * v);
#pragma GCC unroll 4
                for (int i = 0; i < Rows; ++i) {
                    const __m256 weight = _mm256_set1_ps(weights[i][t]);
#pragma GCC unroll 4
                    for (int v = 0; v < kGroup; ++v)
                        o[i][v] = _mm256_fmadd_ps(weight, value[v], o[i][v]);
                }
            }
#pragma GCC unroll 4
            for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 4
                for (int v = 0; v < kGroup; ++v) _mm256_store_ps(out[i] + d0 + 8 * v, o[i][v]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i) {
        float* dst =
            a.out + static_cast<std::size_t>(tile.first_row + i) * a.out_stride + head_offset;
        const __m256 inverse = _mm256_set1_ps(1.0f / running_sum[i]);
        for (int d = 0; d < hd; d += 8)
            masked_store(dst + d, hd - d, _mm256_mul_ps(_mm256_load_ps(out[i] + d), inverse));
    }
}

template <typename Element>
void attention_rows(const AttentionArgs& a, const AttentionTile& tile) {
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
    if (a.head_dim > kMaxHeadDim) {
        scalar_kernels().attention(a, tile);
        return;
    }
    if (a.kv_format == KvFormat::kF16)
        attention_rows<std::uint16_t>(a, tile);
    else
        attention_rows<float>(a, tile);
}

float sum(const float* x, std::size_t count) {
    __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;  // independent chains
    std::size_t i = 0;
    for (; i + 32 <= count; i += 32) {
        a = _mm256_add_ps(a, _mm256_loadu_ps(x + i));
        b = _mm256_add_ps(b, _mm256_loadu_ps(x + i + 8));
        c = _mm256_add_ps(c, _mm256_loadu_ps(x + i + 16));
        d = _mm256_add_ps(d, _mm256_loadu_ps(x + i + 24));
    }
    for (; i < count; i += 8) a = _mm256_add_ps(a, masked_load(x + i, static_cast<int>(count - i)));
    return reduce_add(_mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
}

// ---- conversions -----------------------------------------------------------------------------

void f16_to_f32(const std::uint16_t* src, std::size_t count, float* dst) {
    std::size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(
            dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    if (i < count) {
        const int rest = static_cast<int>(count - i);
        masked_store(dst + i, rest, masked_load(src + i, rest));
    }
}

void f32_to_f16(const float* src, std::size_t count, std::uint16_t* dst) {
    std::size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < count; ++i) dst[i] = cpu::f32_to_f16(src[i]);
}

void bf16_to_f32(const std::uint16_t* src, std::size_t count, float* dst) {
    std::size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
        _mm256_storeu_ps(dst + i,
                         _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
    for (; i < count; ++i) {
        const std::uint32_t bits = static_cast<std::uint32_t>(src[i]) << 16;
        std::memcpy(dst + i, &bits, sizeof(bits));
    }
}

}  // namespace

const KernelTable& avx2_kernels() {
    static const KernelTable table{
        .isa = Isa::kAvx2,
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
