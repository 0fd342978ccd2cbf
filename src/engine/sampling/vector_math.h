// Row-wide float kernels shared by the logits processors, the sampler and logprobs.
//
// They run over a 50257-entry row per sequence per step. They are written as fixed-size blocks of
// independent lanes that the compiler vectorises without -ffast-math, and on x86-64 the same
// source is also compiled for AVX2 and AVX-512 and picked at run time. The exponential is our own
// (range reduction + polynomial, no libm call) and the library is built with -ffp-contract=off,
// so every ISA, and every IEEE-754 platform, computes the same bits: the scalar definitions in
// this header are the specification of the vector code.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace llmserve::engine::detail {

inline constexpr std::size_t kBlock = 256;  // elements per block
inline constexpr std::size_t kLanes = 32;   // independent partial sums per block

// Below this, exp(x) is under the smallest normal float; we return 0 (exp(-87) ~ 1.6e-38 is far
// below any probability that matters after normalisation).
inline constexpr float kExpUnderflow = -87.0f;
inline constexpr float kExpLog2e = 1.44269504088896341f;
inline constexpr float kExpLn2High = 0.693359375f;    // 355/512: n * it is exact for |n| < 2^14
inline constexpr float kExpLn2Low = -2.12194440e-4f;  // ln2 - kExpLn2High
inline constexpr float kExpRoundToInt = 12582912.0f;  // 1.5 * 2^23: adding it rounds to integer
// exp(r) = sum r^k / k!, k = 7 down to 0 (Horner order).
inline constexpr std::array<float, 8> kExpTaylor = {
    1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f};

// exp(x) for x <= 0 (inputs are logits minus the row maximum); -inf and NaN give 0. Relative
// error below 4e-7. x = n*ln2 + r with |r| <= ln2/2, exp(r) by its Taylor series to degree 7
// (truncation < 6e-9), 2^n assembled in the exponent bits.
inline float exp_nonpositive(float x) {
    const float clamped = x > kExpUnderflow ? x : kExpUnderflow;
    const float n = (clamped * kExpLog2e + kExpRoundToInt) - kExpRoundToInt;
    const float r = (clamped - n * kExpLn2High) - n * kExpLn2Low;
    float poly = kExpTaylor[0];
    for (std::size_t k = 1; k < kExpTaylor.size(); ++k) poly = poly * r + kExpTaylor[k];
    const float two_to_n = std::bit_cast<float>((static_cast<std::int32_t>(n) + 127) << 23);
    return x >= kExpUnderflow ? poly * two_to_n : 0.0f;  // NaN gives 0 too
}

// Largest element; -inf when the row is empty or all -inf. NaN entries are ignored.
float max_value(std::span<const float> row);

// out[j] = exp_nonpositive(block[j] - shift) for one block of at most kBlock elements (out has
// room for kBlock); returns their sum: out[j] added into lane j % kLanes in order of j, the kLanes
// lane totals then added in lane order in double. Blocks lying entirely below
// shift + kExpUnderflow (removed tokens) are recognised cheaply and give zeros.
double exp_block(std::span<const float> block, float shift, float* out);

// Sum over the row of exp_nonpositive(row[i] - shift): the exp_block sums of consecutive blocks,
// added in order in double.
double sum_exp(std::span<const float> row, float shift);

// The exp_block sum of each block of the row (block_sums.size() == block_count(row.size())).
inline constexpr std::size_t block_count(std::size_t size) {
    return (size + kBlock - 1) / kBlock;
}
void block_sums(std::span<const float> row, float shift, std::span<double> sums);

// As sum_exp, also storing every exponential in out (out.size() == row.size()).
double exp_row(std::span<const float> row, float shift, std::span<float> out);

// masses[k] = sum of the values >= thresholds[k], for all thresholds in one pass.
inline constexpr std::size_t kMassThresholds = 4;
void masses_at_least(std::span<const float> values,
                     const std::array<float, kMassThresholds>& thresholds,
                     std::array<double, kMassThresholds>& masses);

// Whether every element is finite; and whether every element is finite or -inf (a removed token).
bool all_finite(std::span<const float> row);
bool finite_or_removed(std::span<const float> row);

// row[i] /= divisor (a true division, as transformers' temperature).
void divide(std::span<float> row, float divisor);

// row[i] = -inf wherever keys[i] < threshold (keys.size() == row.size(); keys may be row).
void remove_where_below(std::span<float> row, std::span<const float> keys, float threshold);

}  // namespace llmserve::engine::detail
