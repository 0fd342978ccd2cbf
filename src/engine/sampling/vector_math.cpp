#include "engine/sampling/vector_math.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace llmserve::engine::detail {
namespace {

// The kernels are written once (the *_impl functions, forced inline) on GCC/Clang vector types
// and instantiated by thin wrappers compiled for each instruction set; dispatch() picks the
// widest the CPU supports. A 16-float vector is one AVX-512 register, two AVX2 or four SSE ones.
#define LLMSERVE_FORCE_INLINE [[gnu::always_inline]] inline

constexpr std::size_t kWidth = 16;
using Floats = float __attribute__((vector_size(kWidth * sizeof(float))));
using Ints = std::int32_t __attribute__((vector_size(kWidth * sizeof(std::int32_t))));
// Block sums keep two accumulators, so element j lands in lane j % kLanes as specified.
static_assert(kLanes == 2 * kWidth && kBlock % kLanes == 0);

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

LLMSERVE_FORCE_INLINE Floats load(const float* from) {
    Floats value;
    std::memcpy(&value, from, sizeof value);
    return value;
}

LLMSERVE_FORCE_INLINE void store(float* to, Floats value) {
    std::memcpy(to, &value, sizeof value);
}

LLMSERVE_FORCE_INLINE Floats splat(float value) {
    return Floats{} + value;
}

// exp_nonpositive of the header, lane by lane: the same operations in the same order.
LLMSERVE_FORCE_INLINE Floats exp_nonpositive(Floats x) {
    const Floats underflow = splat(kExpUnderflow);
    const Floats clamped = x > underflow ? x : underflow;
    const Floats n = (clamped * kExpLog2e + kExpRoundToInt) - kExpRoundToInt;
    const Floats r = (clamped - n * kExpLn2High) - n * kExpLn2Low;
    Floats poly = splat(kExpTaylor[0]);
    for (std::size_t k = 1; k < kExpTaylor.size(); ++k) poly = poly * r + kExpTaylor[k];
    const Ints exponent = (__builtin_convertvector(n, Ints) + 127) << 23;
    Floats two_to_n;
    std::memcpy(&two_to_n, &exponent, sizeof two_to_n);
    return x >= underflow ? poly * two_to_n : splat(0.0f);
}

LLMSERVE_FORCE_INLINE float max_value_impl(std::span<const float> row) {
    Floats lanes = splat(kNegativeInfinity);
    std::size_t i = 0;
    for (; i + kWidth <= row.size(); i += kWidth) {
        const Floats values = load(row.data() + i);
        lanes = values > lanes ? values : lanes;
    }
    float best = kNegativeInfinity;
    for (; i < row.size(); ++i) best = row[i] > best ? row[i] : best;
    for (std::size_t l = 0; l < kWidth; ++l) best = lanes[l] > best ? lanes[l] : best;
    return best;
}

LLMSERVE_FORCE_INLINE double exp_block_impl(std::span<const float> block, float shift, float* out) {
    // A block of removed tokens: every exponential would be 0 (see the header).
    if (max_value_impl(block) - shift < kExpUnderflow) {
        std::fill(out, out + kBlock, 0.0f);
        return 0.0;
    }
    alignas(64) float values[kBlock];
    Floats even{};  // lanes 0 .. kWidth-1
    Floats odd{};   // lanes kWidth .. kLanes-1
    if (block.size() == kBlock) {
        for (std::size_t j = 0; j < kBlock; j += kLanes) {
            const Floats low = exp_nonpositive(load(block.data() + j) - shift);
            const Floats high = exp_nonpositive(load(block.data() + j + kWidth) - shift);
            store(values + j, low);
            store(values + j + kWidth, high);
            even += low;
            odd += high;
        }
    } else {
        for (std::size_t j = 0; j < block.size(); ++j) {
            values[j] = detail::exp_nonpositive(block[j] - shift);
        }
        std::fill(values + block.size(), values + kBlock, 0.0f);
        for (std::size_t j = 0; j < kBlock; j += kLanes) {
            even += load(values + j);
            odd += load(values + j + kWidth);
        }
    }
    std::copy(values, values + kBlock, out);
    double sum = 0.0;
    for (std::size_t l = 0; l < kWidth; ++l) sum += even[l];
    for (std::size_t l = 0; l < kWidth; ++l) sum += odd[l];
    return sum;
}

// out (if not null) receives the exponentials, sums (if not null) each block's sum.
LLMSERVE_FORCE_INLINE double exp_row_impl(std::span<const float> row, float shift, float* out,
                                          double* sums) {
    float scratch[kBlock];
    double sum = 0.0;
    for (std::size_t i = 0; i < row.size(); i += kBlock) {
        const std::size_t size = std::min(kBlock, row.size() - i);
        const double block_sum = exp_block_impl(row.subspan(i, size), shift, scratch);
        sum += block_sum;
        if (out != nullptr) std::copy(scratch, scratch + size, out + i);
        if (sums != nullptr) sums[i / kBlock] = block_sum;
    }
    return sum;
}

LLMSERVE_FORCE_INLINE void masses_at_least_impl(
    std::span<const float> values, const std::array<float, kMassThresholds>& thresholds,
    std::array<double, kMassThresholds>& masses) {
    masses.fill(0.0);
    std::size_t i = 0;
    Floats limits[kMassThresholds];
    for (std::size_t k = 0; k < kMassThresholds; ++k) limits[k] = splat(thresholds[k]);
    for (; i + kBlock <= values.size(); i += kBlock) {
        const float* block = values.data() + i;
        // All thresholds in one sweep: independent accumulators, no dependency stalls.
        Floats even[kMassThresholds] = {};
        Floats odd[kMassThresholds] = {};
        for (std::size_t j = 0; j < kBlock; j += kLanes) {
            const Floats low = load(block + j);
            const Floats high = load(block + j + kWidth);
            for (std::size_t k = 0; k < kMassThresholds; ++k) {
                even[k] += low >= limits[k] ? low : splat(0.0f);
                odd[k] += high >= limits[k] ? high : splat(0.0f);
            }
        }
        for (std::size_t k = 0; k < kMassThresholds; ++k) {
            for (std::size_t l = 0; l < kWidth; ++l) masses[k] += even[k][l];
            for (std::size_t l = 0; l < kWidth; ++l) masses[k] += odd[k][l];
        }
    }
    for (; i < values.size(); ++i) {
        for (std::size_t k = 0; k < kMassThresholds; ++k) {
            if (values[i] >= thresholds[k]) masses[k] += values[i];
        }
    }
}

LLMSERVE_FORCE_INLINE void divide_impl(std::span<float> row, float divisor) {
    std::size_t i = 0;
    for (; i + kWidth <= row.size(); i += kWidth) {
        store(row.data() + i, load(row.data() + i) / divisor);
    }
    for (; i < row.size(); ++i) row[i] /= divisor;
}

LLMSERVE_FORCE_INLINE void remove_where_below_impl(std::span<float> row,
                                                   std::span<const float> keys, float threshold) {
    const Floats limit = splat(threshold);
    const Floats removed = splat(kNegativeInfinity);
    std::size_t i = 0;
    for (; i + kWidth <= row.size(); i += kWidth) {
        const Floats key = load(keys.data() + i);  // loaded before the store: keys may be row
        store(row.data() + i, key < limit ? removed : load(row.data() + i));
    }
    for (; i < row.size(); ++i) row[i] = keys[i] < threshold ? kNegativeInfinity : row[i];
}

struct Kernels {
    float (*max_value)(std::span<const float>);
    double (*exp_block)(std::span<const float>, float, float*);
    double (*exp_row)(std::span<const float>, float, float*, double*);
    void (*masses_at_least)(std::span<const float>, const std::array<float, kMassThresholds>&,
                            std::array<double, kMassThresholds>&);
    void (*divide)(std::span<float>, float);
    void (*remove_where_below)(std::span<float>, std::span<const float>, float);
};

#define LLMSERVE_KERNELS(name, target_attribute)                                                \
    target_attribute float max_value_##name(std::span<const float> row) {                       \
        return max_value_impl(row);                                                             \
    }                                                                                           \
    target_attribute double exp_block_##name(std::span<const float> block, float shift,         \
                                             float* out) {                                      \
        return exp_block_impl(block, shift, out);                                               \
    }                                                                                           \
    target_attribute double exp_row_##name(std::span<const float> row, float shift, float* out, \
                                           double* sums) {                                      \
        return exp_row_impl(row, shift, out, sums);                                             \
    }                                                                                           \
    target_attribute void masses_at_least_##name(                                               \
        std::span<const float> values, const std::array<float, kMassThresholds>& thresholds,    \
        std::array<double, kMassThresholds>& masses) {                                          \
        masses_at_least_impl(values, thresholds, masses);                                       \
    }                                                                                           \
    target_attribute void divide_##name(std::span<float> row, float divisor) {                  \
        divide_impl(row, divisor);                                                              \
    }                                                                                           \
    target_attribute void remove_where_below_##name(                                            \
        std::span<float> row, std::span<const float> keys, float threshold) {                   \
        remove_where_below_impl(row, keys, threshold);                                          \
    }                                                                                           \
    constexpr Kernels kKernels_##name = {max_value_##name, exp_block_##name,                    \
                                         exp_row_##name,   masses_at_least_##name,              \
                                         divide_##name,    remove_where_below_##name};

LLMSERVE_KERNELS(generic, )
#if defined(__x86_64__)
LLMSERVE_KERNELS(avx2, [[gnu::target("avx2")]])
LLMSERVE_KERNELS(avx512, [[gnu::target("avx512f")]])
#endif

const Kernels& dispatch() {
#if defined(__x86_64__)
    static const Kernels& chosen = __builtin_cpu_supports("avx512f") ? kKernels_avx512
                                   : __builtin_cpu_supports("avx2")  ? kKernels_avx2
                                                                     : kKernels_generic;
    return chosen;
#else
    return kKernels_generic;
#endif
}

}  // namespace

float max_value(std::span<const float> row) {
    return dispatch().max_value(row);
}

// Bit tests, branch-free so that the loops vectorise: an all-ones exponent is infinity or NaN.
constexpr std::uint32_t kExponentBits = 0x7f800000u;
constexpr std::uint32_t kNegativeInfinityBits = 0xff800000u;

bool all_finite(std::span<const float> row) {
    std::uint32_t non_finite = 0;
    for (const float value : row) {
        non_finite |= (std::bit_cast<std::uint32_t>(value) & kExponentBits) == kExponentBits;
    }
    return non_finite == 0;
}

bool finite_or_removed(std::span<const float> row) {
    std::uint32_t bad = 0;
    for (const float value : row) {
        const auto bits = std::bit_cast<std::uint32_t>(value);
        bad |= ((bits & kExponentBits) == kExponentBits) & (bits != kNegativeInfinityBits);
    }
    return bad == 0;
}

double exp_block(std::span<const float> block, float shift, float* out) {
    return dispatch().exp_block(block, shift, out);
}

double sum_exp(std::span<const float> row, float shift) {
    return dispatch().exp_row(row, shift, nullptr, nullptr);
}

void block_sums(std::span<const float> row, float shift, std::span<double> sums) {
    dispatch().exp_row(row, shift, nullptr, sums.data());
}

double exp_row(std::span<const float> row, float shift, std::span<float> out) {
    return dispatch().exp_row(row, shift, out.data(), nullptr);
}

void masses_at_least(std::span<const float> values,
                     const std::array<float, kMassThresholds>& thresholds,
                     std::array<double, kMassThresholds>& masses) {
    dispatch().masses_at_least(values, thresholds, masses);
}

void divide(std::span<float> row, float divisor) {
    dispatch().divide(row, divisor);
}

void remove_where_below(std::span<float> row, std::span<const float> keys, float threshold) {
    dispatch().remove_where_below(row, keys, threshold);
}

}  // namespace llmserve::engine::detail
