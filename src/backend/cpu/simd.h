// The only per-instruction-set code of the CPU kernels: a float vector (Vf), an int32 vector
// (Vi) and a lane mask (Mask) with the operations the kernels need, for the tier named by
// LLMSERVE_KERNEL_ISA (0 scalar, 1 AVX2 + FMA + F16C, 2 AVX-512 F/BW/DQ/VL + VNNI). Included
// only by kernels_isa.cpp, which is compiled once per tier with that tier's flags; everything
// here has internal linkage so no tier's code can be merged into another's by the linker.
#pragma once

#include <math.h>

#include <cstdint>
#include <cstring>

#if LLMSERVE_KERNEL_ISA > 0
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
#else
#include "common/dtype.h"
#endif

#include "backend/cpu/packed_matrix.h"  // f32_to_f16

namespace llmserve::backend::cpu::simd {
namespace {

#if LLMSERVE_KERNEL_ISA == 2
// ---- AVX-512 ---------------------------------------------------------------------------------

constexpr int kLanes = 16;
using Vf = __m512;
using Vi = __m512i;
using Mask = __mmask16;

inline Mask first_lanes(int count) {  // the first `count` lanes, clamped to [0, kLanes]
    if (count <= 0) return 0;
    if (count >= kLanes) return 0xffff;
    return static_cast<Mask>((1u << count) - 1u);
}
inline bool any(Mask m) {
    return m != 0;
}

inline Vf zero() {
    return _mm512_setzero_ps();
}
inline Vf set1(float v) {
    return _mm512_set1_ps(v);
}
inline Vf load(const float* p) {
    return _mm512_loadu_ps(p);
}
inline Vf load_aligned(const float* p) {
    return _mm512_load_ps(p);
}
inline Vf load(Mask m, const float* p) {  // zero outside the mask, which is not read
    return _mm512_maskz_loadu_ps(m, p);
}
inline void store(float* p, Vf v) {
    _mm512_storeu_ps(p, v);
}
inline void store_aligned(float* p, Vf v) {
    _mm512_store_ps(p, v);
}
inline void store(Mask m, float* p, Vf v) {
    _mm512_mask_storeu_ps(p, m, v);
}

inline Vf widen_f16(__m256i h) {
    return _mm512_cvtph_ps(h);
}
inline Vf widen_bf16(__m256i h) {  // bf16 is the top half of an f32
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline Vf load_f16(const std::uint16_t* p) {
    return widen_f16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline Vf load_f16_aligned(const std::uint16_t* p) {
    return widen_f16(_mm256_load_si256(reinterpret_cast<const __m256i*>(p)));
}
inline Vf load_f16(Mask m, const std::uint16_t* p) {
    return widen_f16(_mm256_maskz_loadu_epi16(m, p));
}
inline Vf load_bf16(const std::uint16_t* p) {
    return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline Vf load_bf16_aligned(const std::uint16_t* p) {
    return widen_bf16(_mm256_load_si256(reinterpret_cast<const __m256i*>(p)));
}
inline Vf load_bf16(Mask m, const std::uint16_t* p) {
    return widen_bf16(_mm256_maskz_loadu_epi16(m, p));
}
inline void store_f16(std::uint16_t* p, Vf v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
inline void store_f16(Mask m, std::uint16_t* p, Vf v) {
    _mm256_mask_storeu_epi16(p, m, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

inline Vf add(Vf a, Vf b) {
    return _mm512_add_ps(a, b);
}
inline Vf sub(Vf a, Vf b) {
    return _mm512_sub_ps(a, b);
}
inline Vf mul(Vf a, Vf b) {
    return _mm512_mul_ps(a, b);
}
inline Vf div(Vf a, Vf b) {
    return _mm512_div_ps(a, b);
}
inline Vf min(Vf a, Vf b) {
    return _mm512_min_ps(a, b);
}
inline Vf max(Vf a, Vf b) {
    return _mm512_max_ps(a, b);
}
inline Vf fma(Vf a, Vf b, Vf c) {  // a * b + c, one rounding
    return _mm512_fmadd_ps(a, b, c);
}
inline Vf abs(Vf a) {
    return _mm512_abs_ps(a);
}
inline Vf keep(Mask m, Vf a) {  // zero outside the mask
    return _mm512_maskz_mov_ps(m, a);
}
inline Vf max(Mask m, Vf a, Vf b) {  // max(a, b) inside the mask, a outside
    return _mm512_mask_max_ps(a, m, a, b);
}
inline float reduce_add(Vf v) {
    return _mm512_reduce_add_ps(v);
}
inline float reduce_max(Vf v) {
    return _mm512_reduce_max_ps(v);
}
inline float reduce_max(Mask m, Vf v) {  // over the mask's lanes
    return _mm512_mask_reduce_max_ps(m, v);
}

// e^x for every lane, relative error ~2 ulp; x below -100 gives 0.
inline Vf exp(Vf x) {
    x = max(min(x, set1(88.7f)), set1(-100.0f));
    const Vf n = _mm512_roundscale_ps(mul(x, set1(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    Vf r = _mm512_fnmadd_ps(n, set1(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    Vf p = set1(1.9875691500e-4f);
    p = fma(p, r, set1(1.3981999507e-3f));
    p = fma(p, r, set1(8.3334519073e-3f));
    p = fma(p, r, set1(4.1665795894e-2f));
    p = fma(p, r, set1(1.6666665459e-1f));
    p = fma(p, r, set1(5.0000001201e-1f));
    p = fma(p, mul(r, r), add(r, set1(1.0f)));
    return _mm512_scalef_ps(p, n);
}

inline Vi zero_int() {
    return _mm512_setzero_si512();
}
inline Vi set1(std::int32_t v) {
    return _mm512_set1_epi32(v);
}
inline Vi add(Vi a, Vi b) {
    return _mm512_add_epi32(a, b);
}
inline Vi clamp(Vi v, std::int32_t low, std::int32_t high) {
    return _mm512_max_epi32(_mm512_min_epi32(v, set1(high)), set1(low));
}
inline Vi round_to_int(Vf v) {  // to nearest, ties to even
    return _mm512_cvtps_epi32(v);
}
inline Vf to_float(Vi v) {
    return _mm512_cvtepi32_ps(v);
}
inline std::int32_t reduce_add(Vi v) {
    return _mm512_reduce_add_epi32(v);
}
inline void store_int8(std::int8_t* p, Vi v) {  // each lane narrowed (it must fit)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v));
}
// 4 * kLanes bytes, 64-byte aligned.
inline Vi load_bytes_aligned(const void* p) {
    return _mm512_load_si512(p);
}
inline Vi broadcast_quad(const std::int8_t* p) {  // 4 bytes into every lane
    std::int32_t four;
    std::memcpy(&four, p, sizeof(four));
    return _mm512_set1_epi32(four);
}

// Sums over one q8 block of (stored byte - 128) * x in each int32 lane: start from
// q8_block_start(offset) (offset = -128 * sum of the block's x), then q8_dot per 4 k values.
// VNNI multiplies the stored bytes as unsigned and the offset undoes their +128.
inline Vi q8_block_start(std::int32_t offset) {
    return set1(offset);
}
inline Vi q8_dot(Vi acc, Vi stored, Vi x_quad) {
    return _mm512_dpbusd_epi32(acc, stored, x_quad);
}
// q4: the low (high) nibble of every byte, a value + 8, as an unsigned byte.
inline Vi low_nibbles(Vi packed) {
    return _mm512_and_si512(packed, _mm512_set1_epi8(0x0f));
}
inline Vi high_nibbles(Vi packed) {
    return low_nibbles(_mm512_srli_epi32(packed, 4));
}
// Sums over one q4 block of (nibble - 8) * x in each int32 lane: start from
// q4_block_start(offset) (offset = -128 * sum of the block's x, as for q8: -8 * that sum undoes
// the nibbles' + 8), then q4_dot per 4 k values.
inline Vi q4_block_start(std::int32_t offset) {
    return set1(offset / (kQ8Offset / kQ4Offset));
}
inline Vi q4_dot(Vi acc, Vi nibbles, Vi x_quad) {
    return _mm512_dpbusd_epi32(acc, nibbles, x_quad);
}

#elif LLMSERVE_KERNEL_ISA == 1
// ---- AVX2 + FMA + F16C -----------------------------------------------------------------------

constexpr int kLanes = 8;
using Vf = __m256;
using Vi = __m256i;
// The first `count` lanes (all when count >= kLanes, none when count <= 0): full vectors take
// plain loads and stores, and the bit mask is only built where a partial one needs it.
struct Mask {
    int count;
    __m256 bits() const {
        return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(count),
                                                      _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    }
};

inline Mask first_lanes(int count) {
    return {count};
}
inline bool any(Mask m) {
    return m.count > 0;
}

inline Vf zero() {
    return _mm256_setzero_ps();
}
inline Vf set1(float v) {
    return _mm256_set1_ps(v);
}
inline Vf load(const float* p) {
    return _mm256_loadu_ps(p);
}
inline Vf load_aligned(const float* p) {
    return _mm256_load_ps(p);
}
inline Vf load(Mask m, const float* p) {
    return m.count >= kLanes ? _mm256_loadu_ps(p)
                             : _mm256_maskload_ps(p, _mm256_castps_si256(m.bits()));
}
inline void store(float* p, Vf v) {
    _mm256_storeu_ps(p, v);
}
inline void store_aligned(float* p, Vf v) {
    _mm256_store_ps(p, v);
}
inline void store(Mask m, float* p, Vf v) {
    if (m.count >= kLanes) {
        _mm256_storeu_ps(p, v);
    } else if (m.count > 0) {
        _mm256_maskstore_ps(p, _mm256_castps_si256(m.bits()), v);
    }
}

inline Vf widen_f16(__m128i h) {
    return _mm256_cvtph_ps(h);
}
inline Vf widen_bf16(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
// The first m.count 16-bit values of p (no others read), zeros after.
inline __m128i load_halves(Mask m, const std::uint16_t* p) {
    if (m.count >= kLanes) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    alignas(16) std::uint16_t part[kLanes] = {};
    for (int i = 0; i < m.count; ++i) part[i] = p[i];
    return _mm_load_si128(reinterpret_cast<const __m128i*>(part));
}
inline Vf load_f16(const std::uint16_t* p) {
    return widen_f16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline Vf load_f16_aligned(const std::uint16_t* p) {
    return widen_f16(_mm_load_si128(reinterpret_cast<const __m128i*>(p)));
}
inline Vf load_f16(Mask m, const std::uint16_t* p) {
    return widen_f16(load_halves(m, p));
}
inline Vf load_bf16(const std::uint16_t* p) {
    return widen_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline Vf load_bf16_aligned(const std::uint16_t* p) {
    return widen_bf16(_mm_load_si128(reinterpret_cast<const __m128i*>(p)));
}
inline Vf load_bf16(Mask m, const std::uint16_t* p) {
    return widen_bf16(load_halves(m, p));
}
inline void store_f16(std::uint16_t* p, Vf v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
inline void store_f16(Mask m, std::uint16_t* p, Vf v) {
    alignas(32) float part[kLanes];
    _mm256_store_ps(part, v);
    for (int i = 0; i < m.count && i < kLanes; ++i) p[i] = cpu::f32_to_f16(part[i]);
}

inline Vf add(Vf a, Vf b) {
    return _mm256_add_ps(a, b);
}
inline Vf sub(Vf a, Vf b) {
    return _mm256_sub_ps(a, b);
}
inline Vf mul(Vf a, Vf b) {
    return _mm256_mul_ps(a, b);
}
inline Vf div(Vf a, Vf b) {
    return _mm256_div_ps(a, b);
}
inline Vf min(Vf a, Vf b) {
    return _mm256_min_ps(a, b);
}
inline Vf max(Vf a, Vf b) {
    return _mm256_max_ps(a, b);
}
inline Vf fma(Vf a, Vf b, Vf c) {
    return _mm256_fmadd_ps(a, b, c);
}
inline Vf abs(Vf a) {
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a);
}
inline Vf keep(Mask m, Vf a) {
    return _mm256_and_ps(m.bits(), a);
}
inline Vf max(Mask m, Vf a, Vf b) {
    return _mm256_blendv_ps(a, _mm256_max_ps(a, b), m.bits());
}
inline float reduce_add(Vf v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
inline float reduce_max(Vf v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
inline float reduce_max(Mask m, Vf v) {
    return reduce_max(_mm256_blendv_ps(set1(-INFINITY), v, m.bits()));
}

// e^x for every lane, relative error ~2 ulp for x in [-87.3, 88.3] (clamped outside).
inline Vf exp(Vf x) {
    x = max(min(x, set1(88.3f)), set1(-87.3f));
    const Vf n = _mm256_round_ps(mul(x, set1(1.44269504088896341f)),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    Vf r = _mm256_fnmadd_ps(n, set1(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    Vf p = set1(1.9875691500e-4f);
    p = fma(p, r, set1(1.3981999507e-3f));
    p = fma(p, r, set1(8.3334519073e-3f));
    p = fma(p, r, set1(4.1665795894e-2f));
    p = fma(p, r, set1(1.6666665459e-1f));
    p = fma(p, r, set1(5.0000001201e-1f));
    p = fma(p, mul(r, r), add(r, set1(1.0f)));
    const __m256i exponent =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return mul(p, _mm256_castsi256_ps(exponent));
}

inline Vi zero_int() {
    return _mm256_setzero_si256();
}
inline Vi set1(std::int32_t v) {
    return _mm256_set1_epi32(v);
}
inline Vi add(Vi a, Vi b) {
    return _mm256_add_epi32(a, b);
}
inline Vi clamp(Vi v, std::int32_t low, std::int32_t high) {
    return _mm256_max_epi32(_mm256_min_epi32(v, set1(high)), set1(low));
}
inline Vi round_to_int(Vf v) {
    return _mm256_cvtps_epi32(v);
}
inline Vf to_float(Vi v) {
    return _mm256_cvtepi32_ps(v);
}
inline std::int32_t reduce_add(Vi v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}
inline void store_int8(std::int8_t* p, Vi v) {
    const __m128i words =
        _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi16(words, words));
}
inline Vi load_bytes_aligned(const void* p) {  // 32-byte aligned
    return _mm256_load_si256(static_cast<const __m256i*>(p));
}
inline Vi broadcast_quad(const std::int8_t* p) {
    std::int32_t four;
    std::memcpy(&four, p, sizeof(four));
    return _mm256_set1_epi32(four);
}

// Without VNNI: |x| (unsigned) times the weight carrying x's sign (signed) by maddubs, which
// cannot saturate since both magnitudes are at most 127; pairs then summed to int32 by madd.
inline Vi q8_block_start(std::int32_t /*offset*/) {
    return zero_int();
}
inline Vi q8_dot(Vi acc, Vi stored, Vi x_quad) {
    const __m256i weights = _mm256_xor_si256(stored, _mm256_set1_epi8(static_cast<char>(0x80)));
    const __m256i products =
        _mm256_maddubs_epi16(_mm256_abs_epi8(x_quad), _mm256_sign_epi8(weights, x_quad));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(products, _mm256_set1_epi16(1)));
}
inline Vi low_nibbles(Vi packed) {
    return _mm256_and_si256(packed, _mm256_set1_epi8(0x0f));
}
inline Vi high_nibbles(Vi packed) {
    return low_nibbles(_mm256_srli_epi32(packed, 4));
}
inline Vi q4_block_start(std::int32_t offset) {
    return set1(offset / (kQ8Offset / kQ4Offset));
}
// Nibbles (unsigned, at most 15) times x (signed) straight into maddubs: pairs stay far from
// int16 saturation.
inline Vi q4_dot(Vi acc, Vi nibbles, Vi x_quad) {
    const __m256i products = _mm256_maddubs_epi16(nibbles, x_quad);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(products, _mm256_set1_epi16(1)));
}

#else
// ---- scalar: portable C++, one lane ----------------------------------------------------------

constexpr int kLanes = 1;
using Vf = float;
using Vi = std::int32_t;
using Mask = bool;

inline Mask first_lanes(int count) {
    return count > 0;
}
inline bool any(Mask m) {
    return m;
}

inline Vf zero() {
    return 0.0f;
}
inline Vf set1(float v) {
    return v;
}
inline Vf load(const float* p) {
    return *p;
}
inline Vf load_aligned(const float* p) {
    return *p;
}
inline Vf load(Mask m, const float* p) {
    return m ? *p : 0.0f;
}
inline void store(float* p, Vf v) {
    *p = v;
}
inline void store_aligned(float* p, Vf v) {
    *p = v;
}
inline void store(Mask m, float* p, Vf v) {
    if (m) *p = v;
}
inline Vf load_f16(const std::uint16_t* p) {
    return f16_to_f32(*p);
}
inline Vf load_f16_aligned(const std::uint16_t* p) {
    return f16_to_f32(*p);
}
inline Vf load_f16(Mask m, const std::uint16_t* p) {
    return m ? f16_to_f32(*p) : 0.0f;
}
inline Vf load_bf16(const std::uint16_t* p) {
    return bf16_to_f32(*p);
}
inline Vf load_bf16_aligned(const std::uint16_t* p) {
    return bf16_to_f32(*p);
}
inline Vf load_bf16(Mask m, const std::uint16_t* p) {
    return m ? bf16_to_f32(*p) : 0.0f;
}
inline void store_f16(std::uint16_t* p, Vf v) {
    *p = cpu::f32_to_f16(v);
}
inline void store_f16(Mask m, std::uint16_t* p, Vf v) {
    if (m) *p = cpu::f32_to_f16(v);
}

inline Vf add(Vf a, Vf b) {
    return a + b;
}
inline Vf sub(Vf a, Vf b) {
    return a - b;
}
inline Vf mul(Vf a, Vf b) {
    return a * b;
}
inline Vf div(Vf a, Vf b) {
    return a / b;
}
inline Vf min(Vf a, Vf b) {
    return b < a ? b : a;
}
inline Vf max(Vf a, Vf b) {
    return a < b ? b : a;
}
inline Vf fma(Vf a, Vf b, Vf c) {  // two roundings: baseline CPUs have no fused multiply-add
    return a * b + c;
}
inline Vf abs(Vf a) {
    return ::fabsf(a);
}
inline Vf keep(Mask m, Vf a) {
    return m ? a : 0.0f;
}
inline Vf max(Mask m, Vf a, Vf b) {
    return m ? max(a, b) : a;
}
inline float reduce_add(Vf v) {
    return v;
}
inline float reduce_max(Vf v) {
    return v;
}
inline float reduce_max(Mask m, Vf v) {
    return m ? v : -INFINITY;
}
inline Vf exp(Vf x) {
    return ::expf(x);
}

inline Vi zero_int() {
    return 0;
}
inline Vi set1(std::int32_t v) {
    return v;
}
inline Vi add(Vi a, Vi b) {
    return a + b;
}
inline Vi clamp(Vi v, std::int32_t low, std::int32_t high) {
    return v < low ? low : (v > high ? high : v);
}
inline Vi round_to_int(Vf v) {
    return static_cast<Vi>(::nearbyintf(v));  // the current rounding mode: to nearest, even
}
inline Vf to_float(Vi v) {
    return static_cast<float>(v);
}
inline std::int32_t reduce_add(Vi v) {
    return v;
}
inline void store_int8(std::int8_t* p, Vi v) {
    *p = static_cast<std::int8_t>(v);
}
inline Vi load_bytes_aligned(const void* p) {  // 4 bytes
    std::int32_t four;
    std::memcpy(&four, p, sizeof(four));
    return four;
}
inline Vi broadcast_quad(const std::int8_t* p) {
    return load_bytes_aligned(p);
}
inline Vi q8_block_start(std::int32_t /*offset*/) {
    return 0;
}
inline Vi q8_dot(Vi acc, Vi stored, Vi x_quad) {
    std::uint8_t w[4];
    std::int8_t x[4];
    std::memcpy(w, &stored, sizeof(w));
    std::memcpy(x, &x_quad, sizeof(x));
    for (int i = 0; i < 4; ++i) acc += (static_cast<int>(w[i]) - 128) * x[i];
    return acc;
}
inline Vi low_nibbles(Vi packed) {
    return static_cast<Vi>(static_cast<std::uint32_t>(packed) & 0x0f0f0f0fu);
}
inline Vi high_nibbles(Vi packed) {
    return low_nibbles(static_cast<Vi>(static_cast<std::uint32_t>(packed) >> 4));
}
inline Vi q4_block_start(std::int32_t offset) {
    return offset / (kQ8Offset / kQ4Offset);
}
inline Vi q4_dot(Vi acc, Vi nibbles, Vi x_quad) {
    std::uint8_t w[4];
    std::int8_t x[4];
    std::memcpy(w, &nibbles, sizeof(w));
    std::memcpy(x, &x_quad, sizeof(x));
    for (int i = 0; i < 4; ++i) acc += w[i] * x[i];
    return acc;
}
#endif

// ---- the same for every tier -----------------------------------------------------------------

inline Vf tanh(Vf u) {  // 1 - 2 / (e^{2u} + 1)
#if LLMSERVE_KERNEL_ISA == 0
    return ::tanhf(u);
#else
    const Vf e = exp(add(u, u));
    return sub(set1(1.0f), div(set1(2.0f), add(e, set1(1.0f))));
#endif
}

}  // namespace
}  // namespace llmserve::backend::cpu::simd
