// GGUF block types in the CPU backend on every tier: Q8_0 kept as q8 and Q4_0 as q4 (or q8 when
// asked) blocks without requantizing (every weight and the product equal the dequantized weights'
// product with q8 activations exactly), K-quants widened to f32 exactly as dequantized, Q4_K
// requantized when q4 is asked for.
#include <gtest/gtest.h>

#include <random>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/packed_matrix.h"
#include "common/dtype.h"
#include "kernel_test_support.h"

namespace llmserve::backend::cpu {
namespace {

// `rows` rows of `cols` values of `type` with random bytes and a fixed, sane fp16 scale per block
// (Q6_K keeps its scale last, the others first; Q4_K / Q5_K also a dmin).
std::vector<std::byte> random_blocks(DType type, int rows, int cols, unsigned seed) {
    std::mt19937 rng(seed);
    const std::size_t block = block_bytes(type);
    const std::size_t blocks = static_cast<std::size_t>(rows) * cols / block_elements(type);
    std::vector<std::byte> bytes(blocks * block);
    for (auto& b : bytes) b = static_cast<std::byte>(rng() & 0xff);
    // llama.cpp's Q8_0 values lie in [-127, 127] (-128 is tested on its own).
    if (type == DType::kQ8_0)
        for (auto& b : bytes)
            if (b == std::byte{0x80}) b = std::byte{0x81};
    const std::uint16_t scale = f32_to_f16(0.01f + static_cast<float>(seed % 7) * 0.003f);
    for (std::size_t i = 0; i < blocks; ++i) {
        std::byte* start = bytes.data() + i * block;
        std::memcpy(type == DType::kQ6_K ? start + 208 : start, &scale, 2);
        if (type == DType::kQ4_K || type == DType::kQ5_K) std::memcpy(start + 2, &scale, 2);
    }
    return bytes;
}

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

TEST(GgufWeights, Q8_0AndQ4_0BecomeQ8AndQ4BlocksExactly) {
    constexpr int kOut = 40, kIn = 96, kRows = 3;
    struct Case {
        DType stored;
        WeightFormat asked, kept;
    };
    constexpr Case kCases[] = {{DType::kQ8_0, WeightFormat::kAuto, WeightFormat::kQ8},
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

            // The product: the exact weights times activations rounded to 8 bits per block of 32.
            std::vector<float> x(static_cast<std::size_t>(kRows) * kIn);
            std::mt19937 rng(5);
            std::normal_distribution<float> normal;
            for (float& v : x) v = normal(rng);
            auto xb = backend->allocate(x.size());
            std::copy(x.begin(), x.end(), xb->data());
            auto y = backend->allocate(static_cast<std::size_t>(kRows) * kOut);
            backend->linear({xb->data(), kRows, kIn}, *native, nullptr, {y->data(), kRows, kOut});
            // Each activation moves by at most half a step, max|x of its block| / 254.
            for (int r = 0; r < kRows; ++r)
                for (int o = 0; o < kOut; ++o) {
                    double exact = 0.0, bound = 1e-4;
                    for (int k = 0; k < kIn; ++k) {
                        const float* row = x.data() + static_cast<std::size_t>(r) * kIn;
                        const int b0 = k / 32 * 32;
                        float amax = 0.0f;
                        for (int j = b0; j < b0 + 32; ++j) amax = std::max(amax, std::abs(row[j]));
                        const double w = values[static_cast<std::size_t>(o) * kIn + k];
                        exact += w * row[k];
                        bound += std::abs(w) * amax / 254.0 * 1.01;
                    }
                    EXPECT_NEAR(y->data()[r * kOut + o], exact, bound)
                        << "row " << r << ", output " << o;
                }
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

// Asked for q4, Q4_K (whose blocks carry a minimum q4 has no place for) is requantized: each weight
// within one q4 step (|largest of its 32| / 8) of its Q4_K value (half a step unless clamped to 7).
TEST(GgufWeights, Q4_KIsRequantizedToQ4) {
    constexpr int kOut = 5, kIn = 512;
    const auto bytes = random_blocks(DType::kQ4_K, kOut, kIn, 3);
    const auto values = dequantized(DType::kQ4_K, bytes, kOut, kIn);
    for (const Isa isa : testing::tiers()) {
        SCOPED_TRACE(testing::tier_name(isa));
        auto backend = make_cpu_backend(1, isa);
        auto weight = backend->upload_matrix(testing::tensor_view(bytes, DType::kQ4_K, kOut, kIn),
                                             MatrixLayout::kOutIn, WeightFormat::kQ4);
        EXPECT_EQ(weight->format(), WeightFormat::kQ4);
        const auto got = read_rows(*backend, *weight, kOut, kIn);
        for (int o = 0; o < kOut; ++o)
            for (int b0 = 0; b0 < kIn; b0 += 32) {
                float amax = 0.0f;
                for (int k = b0; k < b0 + 32; ++k)
                    amax = std::max(amax, std::abs(values[o * kIn + k]));
                for (int k = b0; k < b0 + 32; ++k)
                    ASSERT_NEAR(got[o * kIn + k], values[o * kIn + k], amax / 8.0f * 1.001f)
                        << "output " << o << ", input " << k;
            }
    }
}

TEST(GgufWeights, KQuantsWidenToF32Exactly) {
    constexpr int kOut = 5, kIn = 512;
    for (const Isa isa : testing::tiers()) {
        SCOPED_TRACE(testing::tier_name(isa));
        auto backend = make_cpu_backend(1, isa);
        for (const DType type : {DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
            SCOPED_TRACE(std::string(to_string(type)));
            const auto bytes = random_blocks(type, kOut, kIn, 3);
            const auto tensor = testing::tensor_view(bytes, type, kOut, kIn);
            auto weight = backend->upload_matrix(tensor, MatrixLayout::kOutIn, WeightFormat::kAuto);
            EXPECT_EQ(weight->format(), WeightFormat::kF32);
            EXPECT_EQ(read_rows(*backend, *weight, kOut, kIn), dequantized(type, bytes, kOut, kIn));
        }
    }
}

}  // namespace
}  // namespace llmserve::backend::cpu
