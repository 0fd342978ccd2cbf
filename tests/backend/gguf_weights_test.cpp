// GGUF block types in the CPU backend on every tier: Q8_0 and Q5_0 kept as q8 and Q4_0 as q4 (or
// q8 when asked) blocks without requantizing (every weight and the product equal the dequantized
// weights' product with q8 activations exactly); Q5_1 (q8) kept exactly as blocks with biases;
// Q4_K (q4, or q8 when asked) and Q5_K (q8) kept as blocks with biases, exact but for the f16
// rounding of their scales and minimums; Q6_K requantized to q8 within 1/8 of its own step; fused
// parts of different types packed side by side.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/packed_matrix.h"
#include "common/dtype.h"
#include "kernel_test_support.h"

namespace llmserve::backend::cpu {
namespace {

using testing::random_blocks;

std::vector<float> dequantized(DType type, const std::vector<std::byte>& bytes, int rows,
                               int cols) {
    std::vector<float> out(static_cast<std::size_t>(rows) * cols);
    convert_to_f32(type, bytes.data(), out.size(), out.data());
    return out;
}

// Every row of `weight` (an [out, in] table) read back through the embedding op.
std::vector<float> read_rows(Backend& backend, const Weight& weight, int rows, int cols) {
    auto out = backend.allocate(static_cast<std::size_t>(rows) * cols);
    std::vector<std::int32_t> ids(rows);
    for (int r = 0; r < rows; ++r) ids[r] = r;
    backend.embedding(weight, ids, {out->data(), rows, cols});
    return {out->data(), out->data() + out->size()};
}

// The product through the backend: the exact weights `values` ([out, in]) times activations
// rounded to 8 bits per block of 32, each weight off by at most weight_error[o * in + k] (empty:
// exact).
void expect_product(Backend& backend, const Weight& weight, const std::vector<float>& values,
                    const std::vector<double>& weight_error, int out, int in) {
    constexpr int kRows = 3;
    std::vector<float> x(static_cast<std::size_t>(kRows) * in);
    std::mt19937 rng(5);
    std::normal_distribution<float> normal;
    for (float& v : x) v = normal(rng);
    auto xb = backend.allocate(x.size());
    std::copy(x.begin(), x.end(), xb->data());
    auto y = backend.allocate(static_cast<std::size_t>(kRows) * out);
    backend.linear({xb->data(), kRows, in}, weight, nullptr, {y->data(), kRows, out});
    // Each activation moves by at most half a step, max|x of its block| / 254.
    for (int r = 0; r < kRows; ++r)
        for (int o = 0; o < out; ++o) {
            double exact = 0.0, bound = 1e-4;
            const float* row = x.data() + static_cast<std::size_t>(r) * in;
            for (int k = 0; k < in; ++k) {
                const int b0 = k / 32 * 32;
                float amax = 0.0f;
                for (int j = b0; j < b0 + 32; ++j) amax = std::max(amax, std::abs(row[j]));
                const std::size_t at = static_cast<std::size_t>(o) * in + k;
                const double w = values[at];
                const double dw = weight_error.empty() ? 0.0 : weight_error[at];
                exact += w * row[k];
                bound += (std::abs(w) + dw) * amax / 254.0 * 1.01 + dw * std::abs(row[k]);
            }
            EXPECT_NEAR(y->data()[r * out + o], exact, bound) << "row " << r << ", output " << o;
        }
}

TEST(GgufWeights, Q8_0Q5_0AndQ4_0BecomeQ8AndQ4BlocksExactly) {
    constexpr int kOut = 40, kIn = 96;
    struct Case {
        DType stored;
        WeightFormat asked, kept;
    };
    constexpr Case kCases[] = {{DType::kQ8_0, WeightFormat::kAuto, WeightFormat::kQ8},
                               {DType::kQ5_0, WeightFormat::kAuto, WeightFormat::kQ8},
                               {DType::kQ4_0, WeightFormat::kAuto, WeightFormat::kQ4},
                               {DType::kQ4_0, WeightFormat::kQ8, WeightFormat::kQ8}};
    for (const Isa isa : testing::tiers()) {
        SCOPED_TRACE(testing::tier_name(isa));
        auto backend = make_cpu_backend(2, isa);
        for (const auto [type, asked, kept] : kCases) {
            SCOPED_TRACE(std::string(to_string(type)) + " as " + std::string(to_string(asked)));
            const auto bytes = random_blocks(type, kOut, kIn, 11);
            const auto values = dequantized(type, bytes, kOut, kIn);
            const auto tensor = testing::tensor_view(bytes, type, kOut, kIn);
            auto native = backend->upload_matrix(tensor, MatrixLayout::kOutIn, asked);
            EXPECT_EQ(native->format(), kept);
            EXPECT_EQ(read_rows(*backend, *native, kOut, kIn), values);
            expect_product(*backend, *native, values, {}, kOut, kIn);
        }
    }
}

// A -128 (which the q8 kernels cannot take) makes the tensor requantize: within half a q8 step.
TEST(GgufWeights, Q8_0WithMinus128IsRequantized) {
    constexpr int kOut = 2, kIn = 32;
    auto bytes = random_blocks(DType::kQ8_0, kOut, kIn, 4);
    bytes[2 + 5] = std::byte{0x80};
    const auto values = dequantized(DType::kQ8_0, bytes, kOut, kIn);
    for (const Isa isa : testing::tiers()) {
        SCOPED_TRACE(testing::tier_name(isa));
        auto backend = make_cpu_backend(1, isa);
        auto weight = backend->upload_matrix(testing::tensor_view(bytes, DType::kQ8_0, kOut, kIn),
                                             MatrixLayout::kOutIn, WeightFormat::kAuto);
        EXPECT_EQ(weight->format(), WeightFormat::kQ8);
        const auto got = read_rows(*backend, *weight, kOut, kIn);
        for (int o = 0; o < kOut; ++o) {
            float amax = 0.0f;
            for (int k = 0; k < kIn; ++k) amax = std::max(amax, std::abs(values[o * kIn + k]));
            for (int k = 0; k < kIn; ++k)
                EXPECT_NEAR(got[o * kIn + k], values[o * kIn + k], amax / 254.0f * 1.01f)
                    << "output " << o << ", input " << k;
        }
    }
}

// The most a Q5_1 / Q4_K / Q5_K weight moves in q4 (`q4`) or q8 blocks with biases: only the
// scale s and the bias c are rounded to f16 (relative 2^-11, or 2^-25 absolute below f16's normal
// range), and the f32 arithmetic on both sides adds a few ulps. q4: q = n - 8, c = 8 s - m; q8:
// q = n, c = -m.
std::vector<double> k_quant_error_bound(DType type, const std::vector<std::byte>& bytes, bool q4) {
    std::vector<double> bound;
    MinimumBlocks block;
    for (std::size_t at = 0; at < bytes.size(); at += block_bytes(type)) {
        unpack_minimum_blocks(type, bytes.data() + at, block);
        for (int s = 0; s < block.count; ++s) {
            const double scale = std::abs(block.scale[s]);
            const double c = std::abs(q4 ? 8.0 * block.scale[s] - block.min[s] : block.min[s]);
            for (int i = 0; i < 32; ++i) {
                const double q = std::abs(block.values[s][i] - (q4 ? 8.0 : 0.0));
                bound.push_back(q * std::max(scale * 0x1p-11, 0x1p-25) +
                                std::max(c * 0x1p-11, 0x1p-25) + (q * scale + c) * 0x1p-21);
            }
        }
    }
    return bound;
}

TEST(GgufWeights, Q5_1Q4_KAndQ5_KKeepTheirValuesInBlocksWithBiases) {
    constexpr int kOut = 40, kIn = 512;
    struct Case {
        DType stored;
        WeightFormat asked, kept;
    };
    constexpr Case kCases[] = {{DType::kQ4_K, WeightFormat::kAuto, WeightFormat::kQ4},
                               {DType::kQ4_K, WeightFormat::kQ4, WeightFormat::kQ4},
                               {DType::kQ4_K, WeightFormat::kQ8, WeightFormat::kQ8},
                               {DType::kQ5_K, WeightFormat::kAuto, WeightFormat::kQ8},
                               {DType::kQ5_K, WeightFormat::kQ8, WeightFormat::kQ8},
                               {DType::kQ5_1, WeightFormat::kAuto, WeightFormat::kQ8}};
    for (const Isa isa : testing::tiers()) {
        SCOPED_TRACE(testing::tier_name(isa));
        auto backend = make_cpu_backend(2, isa);
        for (const auto [type, asked, kept] : kCases) {
            SCOPED_TRACE(std::string(to_string(type)) + " as " + std::string(to_string(asked)));
            const auto bytes = random_blocks(type, kOut, kIn, 11);
            const auto values = dequantized(type, bytes, kOut, kIn);
            const auto bound = k_quant_error_bound(type, bytes, kept == WeightFormat::kQ4);
            auto weight = backend->upload_matrix(testing::tensor_view(bytes, type, kOut, kIn),
                                                 MatrixLayout::kOutIn, asked);
            EXPECT_EQ(weight->format(), kept);
            // In q8 / q4 blocks plus their f16 biases: a third or a half of f32.
            EXPECT_LT(weight->resident_bytes(), values.size() * sizeof(float) / 2);
            const auto got = read_rows(*backend, *weight, kOut, kIn);
            double worst = 0.0;
            for (std::size_t i = 0; i < got.size(); ++i) {
                ASSERT_LE(std::abs(got[i] - values[i]), bound[i]) << "weight " << i;
                worst = std::max(worst, std::abs(static_cast<double>(got[i]) - values[i]));
            }
            // Q5_1's scale and minimum are f16 already: exact. A K-quant's are products that f16
            // rounds: this is not an f32 copy.
            if (type == DType::kQ5_1)
                EXPECT_EQ(got, values);
            else
                EXPECT_GT(worst, 0.0);
            expect_product(*backend, *weight, values, bound, kOut, kIn);
        }
    }
}

// Per 32 weights, the Q6_K step d * max(|scale|) of its two 16-value sub-blocks.
std::vector<double> q6_k_steps(const std::vector<std::byte>& bytes) {
    std::vector<double> steps;
    for (std::size_t at = 0; at < bytes.size(); at += block_bytes(DType::kQ6_K)) {
        const auto* scales = reinterpret_cast<const std::int8_t*>(bytes.data() + at + 192);
        std::uint16_t d_bits;
        std::memcpy(&d_bits, bytes.data() + at + 208, 2);
        const double d = std::abs(f16_to_f32(d_bits));
        for (int b = 0; b < 8; ++b)
            steps.push_back(d * std::max(std::abs(scales[2 * b]), std::abs(scales[2 * b + 1])));
    }
    return steps;
}

// Q6_K has no exact q8 form (two int8 scales per 32 values): requantized per 32 with
// d = max|w| / 127, a weight moves by at most d / 2 <= (32 step / 127) / 2, about 1/8 of the Q6_K
// step (slightly more with d's f16 rounding).
TEST(GgufWeights, Q6_KIsRequantizedToQ8WithinAnEighthOfItsStep) {
    constexpr int kOut = 40, kIn = 512;
    const auto bytes = random_blocks(DType::kQ6_K, kOut, kIn, 3);
    const auto values = dequantized(DType::kQ6_K, bytes, kOut, kIn);
    const auto steps = q6_k_steps(bytes);
    std::vector<double> bound(values.size());
    for (std::size_t i = 0; i < bound.size(); ++i) bound[i] = steps[i / 32] * 0.1261;
    for (const Isa isa : testing::tiers()) {
        SCOPED_TRACE(testing::tier_name(isa));
        auto backend = make_cpu_backend(2, isa);
        auto weight = backend->upload_matrix(testing::tensor_view(bytes, DType::kQ6_K, kOut, kIn),
                                             MatrixLayout::kOutIn, WeightFormat::kAuto);
        EXPECT_EQ(weight->format(), WeightFormat::kQ8);
        const auto got = read_rows(*backend, *weight, kOut, kIn);
        double worst = 0.0, squares = 0.0;
        for (std::size_t i = 0; i < got.size(); ++i) {
            const double error = std::abs(static_cast<double>(got[i]) - values[i]);
            ASSERT_LE(error, bound[i]) << "weight " << i;
            worst = std::max(worst, error / steps[i / 32]);
            squares += (error / steps[i / 32]) * (error / steps[i / 32]);
        }
        // The measured error in Q6_K steps, for PERFORMANCE.md.
        ::testing::Test::RecordProperty("max_error_in_q6_k_steps", std::to_string(worst));
        ::testing::Test::RecordProperty(
            "rms_error_in_q6_k_steps",
            std::to_string(std::sqrt(squares / static_cast<double>(got.size()))));
        expect_product(*backend, *weight, values, bound, kOut, kIn);
    }
}

// Fused products of mixed types in one q8 matrix with block biases, each part in its own panels
// and as exact as alone: Q4_K_M's q and k (Q4_K) with v (Q6_K); and the 32-value types llama.cpp
// falls back to where rows are not whole super-blocks, Q5_0 and Q5_1 (whose zero-biased and
// biased blocks share the matrix) with Q8_0. The last part's 40 outputs end off a panel, which
// only the last part may.
TEST(GgufWeights, MixedPartsArePackedSideBySide) {
    constexpr int kIn = 512;
    const int outs[] = {64, 32, 40};
    const DType mixes[][3] = {{DType::kQ4_K, DType::kQ4_K, DType::kQ6_K},
                              {DType::kQ5_0, DType::kQ5_1, DType::kQ8_0}};
    for (const auto& types : mixes) {
        SCOPED_TRACE(std::string(to_string(types[0])) + ", " + std::string(to_string(types[1])) +
                     ", " + std::string(to_string(types[2])));
        std::vector<std::vector<std::byte>> bytes;
        std::vector<io::TensorView> views;
        std::vector<float> values;
        std::vector<double> bound;
        for (int i = 0; i < 3; ++i) {
            bytes.push_back(random_blocks(types[i], outs[i], kIn, 20 + i));
            const auto part = dequantized(types[i], bytes[i], outs[i], kIn);
            values.insert(values.end(), part.begin(), part.end());
            if (has_block_minimums(types[i])) {
                const auto b = k_quant_error_bound(types[i], bytes[i], /*q4=*/false);
                bound.insert(bound.end(), b.begin(), b.end());
            } else if (types[i] == DType::kQ6_K) {
                for (const double step : q6_k_steps(bytes[i]))
                    bound.insert(bound.end(), 32, step * 0.1261);
            } else {
                bound.insert(bound.end(), part.size(), 0.0);  // copied as they stand
            }
        }
        for (int i = 0; i < 3; ++i)
            views.push_back(testing::tensor_view(bytes[i], types[i], outs[i], kIn));
        const io::TensorView* parts[] = {&views[0], &views[1], &views[2]};
        const int total = outs[0] + outs[1] + outs[2];
        for (const Isa isa : testing::tiers()) {
            SCOPED_TRACE(testing::tier_name(isa));
            auto backend = make_cpu_backend(2, isa);
            auto weight = backend->upload_matrix_parts(parts, WeightFormat::kAuto);
            ASSERT_NE(weight, nullptr);
            EXPECT_EQ(weight->format(), WeightFormat::kQ8);
            EXPECT_EQ(weight->out_features(), total);
            EXPECT_EQ(weight->in_features(), kIn);
            const auto got = read_rows(*backend, *weight, total, kIn);
            for (std::size_t i = 0; i < got.size(); ++i)
                ASSERT_LE(std::abs(static_cast<double>(got[i]) - values[i]), bound[i])
                    << "weight " << i;
            expect_product(*backend, *weight, values, bound, total, kIn);

            // A part before the last that ends off a panel: the caller concatenates instead.
            const io::TensorView* unaligned[] = {&views[2], &views[0]};
            EXPECT_EQ(backend->upload_matrix_parts(unaligned, WeightFormat::kAuto), nullptr);
        }
    }
}

}  // namespace
}  // namespace llmserve::backend::cpu
