// Row-wide float kernels shared by the logits processors, the sampler and logprobs.
//
// They run over a 50257-entry row per sequence per step, so they are written as fixed-size blocks
// of independent lanes that the compiler vectorises at -O2 without -ffast-math (the library is
// built with -fno-trapping-math so that the selects in exp_nonpositive are if-converted). The
// exponential is our own (range reduction + polynomial, no libm call), so results are the same bit
// for bit on every IEEE-754 platform that does not contract a*b+c into FMA (C++20 mode keeps it off
// in GCC).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

namespace llmserve::engine::detail {

inline constexpr std::size_t kBlock = 256;  // elements per vectorised block
inline constexpr std::size_t kLanes = 8;    // independent accumulators per block

// Below this, exp(x) is under the smallest normal float; we return 0 (exp(-87) ~ 1.6e-38 is far
// below any probability that matters after normalisation).
inline constexpr float kExpUnderflow = -87.0f;

// exp(x) for x <= 0 (inputs are logits minus the row maximum); -inf gives 0. Relative error
// below 3e-7. x = n*ln2 + r with |r| <= ln2/2, exp(r) by its Taylor series to degree 7
// (truncation < 6e-9), 2^n assembled in the exponent bits.
inline float exp_nonpositive(float x) {
    constexpr float kLog2e = 1.44269504088896341f;
    constexpr float kLn2High = 0.693359375f;    // 355/512: n * kLn2High is exact for |n| < 2^14
    constexpr float kLn2Low = -2.12194440e-4f;  // ln2 - kLn2High
    constexpr float kRoundToInt = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    const float clamped = std::max(x, kExpUnderflow);
    const float n = (clamped * kLog2e + kRoundToInt) - kRoundToInt;
    const float r = (clamped - n * kLn2High) - n * kLn2Low;
    float poly = 1.0f / 5040.0f;
    poly = poly * r + 1.0f / 720.0f;
    poly = poly * r + 1.0f / 120.0f;
    poly = poly * r + 1.0f / 24.0f;
    poly = poly * r + 1.0f / 6.0f;
    poly = poly * r + 0.5f;
    poly = poly * r + 1.0f;
    poly = poly * r + 1.0f;
    const float two_to_n = std::bit_cast<float>((static_cast<std::int32_t>(n) + 127) << 23);
    return x < kExpUnderflow ? 0.0f : poly * two_to_n;
}

// Largest element; -inf when the row is empty or all -inf. NaN entries are ignored.
inline float max_value(std::span<const float> row) {
    float lanes[kLanes];
    std::fill(std::begin(lanes), std::end(lanes), -std::numeric_limits<float>::infinity());
    std::size_t i = 0;
    for (; i + kBlock <= row.size(); i += kBlock) {
        const float* block = row.data() + i;
        for (std::size_t j = 0; j < kBlock; j += kLanes) {
            for (std::size_t l = 0; l < kLanes; ++l) {
                lanes[l] = block[j + l] > lanes[l] ? block[j + l] : lanes[l];
            }
        }
    }
    float best = -std::numeric_limits<float>::infinity();
    for (; i < row.size(); ++i) best = row[i] > best ? row[i] : best;
    for (float lane : lanes) best = lane > best ? lane : best;
    return best;
}

// out[i] = exp(block[i] - shift) for one block of at most kBlock elements; returns their sum.
// The sum adds kLanes interleaved partial sums in a fixed order, so it is reproducible. (The
// exponentials go to a local array first: writing through `out` directly, which might alias
// `block`, would keep the loop from vectorising.)
inline double exp_block(std::span<const float> block, float shift, float* out) {
    float values[kBlock];
    if (block.size() == kBlock) {
        for (std::size_t j = 0; j < kBlock; ++j) values[j] = exp_nonpositive(block[j] - shift);
    } else {
        for (std::size_t j = 0; j < block.size(); ++j) {
            values[j] = exp_nonpositive(block[j] - shift);
        }
        std::fill(values + block.size(), values + kBlock, 0.0f);
    }
    float lanes[kLanes] = {};
    for (std::size_t j = 0; j < kBlock; j += kLanes) {
        for (std::size_t l = 0; l < kLanes; ++l) lanes[l] += values[j + l];
    }
    std::copy(values, values + kBlock, out);
    double sum = 0.0;
    for (float lane : lanes) sum += lane;
    return sum;
}

// Sum over the row of exp(row[i] - shift), blockwise as in exp_block (same additions, same order).
inline double sum_exp(std::span<const float> row, float shift) {
    float scratch[kBlock];
    double sum = 0.0;
    for (std::size_t i = 0; i < row.size(); i += kBlock) {
        sum += exp_block(row.subspan(i, std::min(kBlock, row.size() - i)), shift, scratch);
    }
    return sum;
}

}  // namespace llmserve::engine::detail
