// Every kernel of every tier this CPU supports against plain double-precision references written
// here, on shapes with remainders (M = 1, odd K and N, K not a multiple of the q8 block).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "backend/cpu/packed_matrix.h"
#include "common/dtype.h"
#include "common/error.h"
#include "tests/backend/kernel_test_support.h"

namespace llmserve::backend::cpu {
namespace {

using namespace testing;  // the shared kernel-test helpers of kernel_test_support.h

struct Shape {
    int m, k, n;
};
// Remainders everywhere: one row, odd sizes, N off the 32-column panel, K off the 32 q8 block,
// and rows beyond the widest register tile (12).
constexpr Shape kShapes[] = {{1, 1, 1},    {1, 37, 33}, {3, 64, 32},   {5, 100, 65}, {13, 33, 97},
                             {12, 96, 40}, {17, 5, 31}, {2, 200, 130}, {25, 64, 64}, {1, 768, 70}};

const char* format_name(WeightFormat format) {
    return to_string(format).data();
}

// A random [k, n] weight stored as `layout`, packed as `format`.
struct PackedCase {
    std::vector<float> stored;
    PackedMatrix packed;
};
PackedCase make_packed(int k, int n, MatrixLayout layout, WeightFormat format, unsigned seed,
                       WorkerPool& pool) {
    PackedCase c;
    c.stored = random_floats(static_cast<std::size_t>(k) * n, -1.0f, 1.0f, seed);
    const auto rows = layout == MatrixLayout::kInOut ? k : n;
    const auto cols = layout == MatrixLayout::kInOut ? n : k;
    WeightArena arena;  // the packed matrix keeps its memory alive
    c.packed =
        PackedMatrix::pack(tensor_view(std::as_bytes(std::span(c.stored)), DType::kF32, rows, cols),
                           layout, format, pool, arena);
    return c;
}

float stored_value(const PackedCase& c, MatrixLayout layout, int k, int n, int kk, int nn) {
    return layout == MatrixLayout::kInOut ? c.stored[static_cast<std::size_t>(kk) * n + nn]
                                          : c.stored[static_cast<std::size_t>(nn) * k + kk];
}

TEST(Packing, ElementsAreTheStoredValuesInTheTargetFormat) {
    WorkerPool pool(2);
    for (MatrixLayout layout : {MatrixLayout::kInOut, MatrixLayout::kOutIn}) {
        for (WeightFormat format : {WeightFormat::kF32, WeightFormat::kF16, WeightFormat::kBF16}) {
            SCOPED_TRACE(format_name(format));
            const int k = 45, n = 70;
            const PackedCase c = make_packed(k, n, layout, format, 11, pool);
            EXPECT_EQ(c.packed.view().panels, 3);
            for (int kk = 0; kk < k; ++kk)
                for (int nn = 0; nn < n; ++nn) {
                    const float w = stored_value(c, layout, k, n, kk, nn);
                    const float expected = format == WeightFormat::kF32 ? w
                                           : format == WeightFormat::kF16
                                               ? f16_to_f32(f32_to_f16(w))
                                               : bf16_to_f32(f32_to_bf16(w));
                    ASSERT_EQ(c.packed.element(kk, nn), expected) << "k " << kk << " n " << nn;
                }
            std::vector<float> column(k);
            c.packed.read_output(n - 1, column.data());
            for (int kk = 0; kk < k; ++kk) EXPECT_EQ(column[kk], c.packed.element(kk, n - 1));
        }
    }
}

TEST(Packing, ArenaPiecesAreAlignedDisjointAndOutliveTheArena) {
    std::vector<std::shared_ptr<std::byte>> pieces;
    std::vector<std::size_t> sizes = {1, 100, 4096, std::size_t{3} << 20, 65, std::size_t{20} << 20,
                                      64};
    {
        WeightArena arena;
        for (std::size_t size : sizes) pieces.push_back(arena.allocate(size));
    }  // the pieces keep their regions alive
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        const auto address = reinterpret_cast<std::uintptr_t>(pieces[i].get());
        EXPECT_EQ(address % 64, 0u) << "piece " << i;
        for (std::size_t b = 0; b < sizes[i]; b += 997) EXPECT_EQ(pieces[i].get()[b], std::byte{0});
        std::memset(pieces[i].get(), static_cast<int>(i + 1), sizes[i]);
    }
    for (std::size_t i = 0; i < pieces.size(); ++i)  // nobody wrote over anybody
        EXPECT_EQ(pieces[i].get()[sizes[i] - 1], static_cast<std::byte>(i + 1)) << "piece " << i;
}

// Each q8 weight is within half a quantization step of the original, the step being its
// column's block maximum / 127 (rounded to f16).
TEST(Packing, Q8WeightsAreWithinHalfAStep) {
    WorkerPool pool(1);
    for (MatrixLayout layout : {MatrixLayout::kInOut, MatrixLayout::kOutIn}) {
        const int k = 75, n = 40;
        const PackedCase c = make_packed(k, n, layout, WeightFormat::kQ8, 12, pool);
        for (int nn = 0; nn < n; ++nn)
            for (int block = 0; block * kQ8Block < k; ++block) {
                float amax = 0.0f;
                const int end = std::min(k, (block + 1) * kQ8Block);
                for (int kk = block * kQ8Block; kk < end; ++kk)
                    amax = std::max(amax, std::abs(stored_value(c, layout, k, n, kk, nn)));
                const float step = f16_to_f32(f32_to_f16(amax / 127.0f));
                for (int kk = block * kQ8Block; kk < end; ++kk) {
                    const float w = stored_value(c, layout, k, n, kk, nn);
                    ASSERT_LE(std::abs(c.packed.element(kk, nn) - w), 0.5f * step * 1.0001f)
                        << "k " << kk << " n " << nn;
                }
            }
    }
}

// Each q4 weight is within half a step d = |w_e| / 8 of the original (w_e: its column's block value
// of largest magnitude, which maps to -8 exactly), except values beyond 7.5 steps on the side
// opposite w_e: they clamp to 7 steps, within one step.
TEST(Packing, Q4WeightsAreWithinHalfAStepOrClampedToSeven) {
    WorkerPool pool(1);
    for (MatrixLayout layout : {MatrixLayout::kInOut, MatrixLayout::kOutIn}) {
        const int k = 75, n = 40;
        const PackedCase c = make_packed(k, n, layout, WeightFormat::kQ4, 13, pool);
        int clamped = 0;
        for (int nn = 0; nn < n; ++nn)
            for (int block = 0; block * kQ8Block < k; ++block) {
                float extreme = 0.0f;
                const int end = std::min(k, (block + 1) * kQ8Block);
                for (int kk = block * kQ8Block; kk < end; ++kk) {
                    const float w = stored_value(c, layout, k, n, kk, nn);
                    if (std::abs(w) > std::abs(extreme)) extreme = w;
                }
                const float step = f16_to_f32(f32_to_f16(extreme / -8.0f));
                for (int kk = block * kQ8Block; kk < end; ++kk) {
                    const float w = stored_value(c, layout, k, n, kk, nn);
                    const float got = c.packed.element(kk, nn);
                    const bool beyond_seven = w / step > 7.5f;
                    clamped += beyond_seven;
                    // A clamped value lies within 8 steps, give or take d's f16 rounding.
                    const float allowed = (beyond_seven ? 1.001f : 0.5001f) * std::abs(step);
                    ASSERT_LE(std::abs(got - w), allowed) << "k " << kk << " n " << nn;
                }
            }
        EXPECT_GT(clamped, 0);  // the clamped case is exercised
    }
}

// Reference q8 activation quantization, written independently of the kernels.
struct ReferenceQuantized {
    std::vector<std::int8_t> values;
    std::vector<float> scales;
    std::vector<std::int32_t> offsets;
};
ReferenceQuantized reference_quantize(const std::vector<float>& x, int m, int k, int stride) {
    const int blocks = (k + kQ8Block - 1) / kQ8Block;
    ReferenceQuantized q;
    q.values.assign(static_cast<std::size_t>(m) * blocks * kQ8Block, 0);
    q.scales.assign(static_cast<std::size_t>(m) * blocks, 0.0f);
    q.offsets.assign(q.scales.size(), 0);
    for (int r = 0; r < m; ++r)
        for (int b = 0; b < blocks; ++b) {
            float amax = 0.0f;
            for (int i = b * kQ8Block; i < std::min(k, (b + 1) * kQ8Block); ++i)
                amax = std::max(amax, std::abs(x[static_cast<std::size_t>(r) * stride + i]));
            const std::size_t slot = static_cast<std::size_t>(r) * blocks + b;
            q.scales[slot] = amax / 127.0f;
            int sum = 0;
            for (int i = 0; i < kQ8Block; ++i) {
                const int index = b * kQ8Block + i;
                if (index >= k || amax == 0.0f) continue;
                const float v = std::nearbyint(x[static_cast<std::size_t>(r) * stride + index] *
                                               (127.0f / amax));
                q.values[slot * kQ8Block + i] =
                    static_cast<std::int8_t>(std::clamp(v, -127.0f, 127.0f));
                sum += q.values[slot * kQ8Block + i];
            }
            q.offsets[slot] = -128 * sum;
        }
    return q;
}

// Runs the tier's GEMM for `format` over the panels in two ranges (as two threads would), with a
// row stride wider than k and sentinels right of n that must stay untouched.
void check_gemm(Isa isa, WeightFormat format, MatrixLayout layout, const Shape& s, bool with_bias) {
    SCOPED_TRACE(tier_name(isa) + ", " + format_name(format) + ", m " + std::to_string(s.m) +
                 " k " + std::to_string(s.k) + " n " + std::to_string(s.n) +
                 (with_bias ? ", bias" : "") +
                 (layout == MatrixLayout::kInOut ? ", [in, out]" : ", [out, in]"));
    WorkerPool pool(1);
    const PackedCase c = make_packed(s.k, s.n, layout, format, 100 + s.k + s.n, pool);
    const PackedView& w = c.packed.view();
    const int x_stride = s.k + 5, y_stride = s.n + 7;
    const auto x = random_floats(static_cast<std::size_t>(s.m) * x_stride, -2.0f, 2.0f, 7 + s.m);
    const auto bias = random_floats(s.n, -1.0f, 1.0f, 3);
    constexpr float kSentinel = 12345.0f;
    std::vector<float> y(static_cast<std::size_t>(s.m) * y_stride, kSentinel);

    const KernelTable& kernels = kernel_table(isa);
    GemmArgs args{&w,       x.data(), x_stride, nullptr, with_bias ? bias.data() : nullptr,
                  y.data(), y_stride, s.m};
    const int blocks = w.q8_blocks();
    std::vector<std::int8_t> q_values(static_cast<std::size_t>(s.m) * blocks * kQ8Block, 99);
    std::vector<float> q_scales(static_cast<std::size_t>(s.m) * blocks);
    std::vector<std::int32_t> q_offsets(q_scales.size());
    const QuantizedRows xq{s.m, blocks, q_values.data(), q_scales.data(), q_offsets.data()};
    ReferenceQuantized expected_q;
    auto* gemm = kernels.gemm_f32;
    if (format == WeightFormat::kF16) gemm = kernels.gemm_f16;
    if (format == WeightFormat::kBF16) gemm = kernels.gemm_bf16;
    const bool quantized = format == WeightFormat::kQ8 || format == WeightFormat::kQ4;
    if (quantized) {
        gemm = format == WeightFormat::kQ8 ? kernels.gemm_q8 : kernels.gemm_q4;
        kernels.quantize_rows(x.data(), x_stride, s.k, 0, s.m, xq);
        expected_q = reference_quantize(x, s.m, s.k, x_stride);
        ASSERT_EQ(q_values, expected_q.values);
        ASSERT_EQ(q_scales, expected_q.scales);
        ASSERT_EQ(q_offsets, expected_q.offsets);
        args.xq = &xq;
    }
    gemm(args, 0, w.panels / 2);
    gemm(args, w.panels / 2, w.panels);

    for (int r = 0; r < s.m; ++r) {
        for (int col = 0; col < s.n; ++col) {
            double expected = with_bias ? bias[col] : 0.0, magnitude = std::abs(expected);
            for (int kk = 0; kk < s.k; ++kk) {
                double xv = x[static_cast<std::size_t>(r) * x_stride + kk];
                if (quantized) {
                    const std::size_t slot = static_cast<std::size_t>(r) * blocks + kk / kQ8Block;
                    xv = static_cast<double>(expected_q.values[slot * kQ8Block + kk % kQ8Block]) *
                         expected_q.scales[slot];
                }
                const double term = xv * c.packed.element(kk, col);
                expected += term;
                magnitude += std::abs(term);
            }
            const float got = y[static_cast<std::size_t>(r) * y_stride + col];
            ASSERT_NEAR(got, expected, 2e-6 * magnitude + 1e-30)
                << "row " << r << " column " << col;
        }
        for (int col = s.n; col < y_stride; ++col)
            ASSERT_EQ(y[static_cast<std::size_t>(r) * y_stride + col], kSentinel)
                << "wrote past column " << s.n;
    }
}

TEST(Kernels, GemmMatchesReferenceForEveryFormatAndTier) {
    for (Isa isa : tiers())
        for (WeightFormat format : {WeightFormat::kF32, WeightFormat::kF16, WeightFormat::kBF16,
                                    WeightFormat::kQ8, WeightFormat::kQ4})
            for (const Shape& s : kShapes) {
                check_gemm(isa, format, MatrixLayout::kInOut, s, /*with_bias=*/s.m % 2 == 1);
                check_gemm(isa, format, MatrixLayout::kOutIn, s, /*with_bias=*/s.m % 2 == 0);
            }
}

// q8 / q4 blocks with biases (GGUF Q4_K into q4 or q8, Q5_K and Q5_1 into q8) against the same
// reference:
// the weights the packing holds (d q + c) times the activations as quantized. The kernel adds
// d * dx * sum(q qx) and c * dx * sum(qx) apart, so the rounding it may differ by is relative to
// sum |x| (|d q| + |c|), read from the blocks, not to sum |x w| (d q and c may nearly cancel).
void check_gemm_with_block_biases(Isa isa, DType stored, WeightFormat format, int m, int k, int n) {
    SCOPED_TRACE(tier_name(isa) + ", " + std::string(to_string(stored)) + " as " +
                 format_name(format) + ", m " + std::to_string(m) + " k " + std::to_string(k) +
                 " n " + std::to_string(n));
    WorkerPool pool(1);
    WeightArena arena;
    const auto bytes = random_blocks(stored, n, k, 30 + k + n);
    const PackedMatrix packed = PackedMatrix::pack(tensor_view(bytes, stored, n, k),
                                                   MatrixLayout::kOutIn, format, pool, arena);
    const PackedView& w = packed.view();
    ASSERT_TRUE(w.block_bias);
    ASSERT_EQ(w.format, format);
    const int x_stride = k + 3, y_stride = n + 5;
    const auto x = random_floats(static_cast<std::size_t>(m) * x_stride, -2.0f, 2.0f, 9 + m);
    constexpr float kSentinel = 12345.0f;
    std::vector<float> y(static_cast<std::size_t>(m) * y_stride, kSentinel);
    const int blocks = w.q8_blocks();
    std::vector<std::int8_t> q_values(static_cast<std::size_t>(m) * blocks * kQ8Block);
    std::vector<float> q_scales(static_cast<std::size_t>(m) * blocks);
    std::vector<std::int32_t> q_offsets(q_scales.size());
    const QuantizedRows xq{m, blocks, q_values.data(), q_scales.data(), q_offsets.data()};
    const KernelTable& kernels = kernel_table(isa);
    kernels.quantize_rows(x.data(), x_stride, k, 0, m, xq);
    const ReferenceQuantized expected_q = reference_quantize(x, m, k, x_stride);
    GemmArgs args{&w, x.data(), x_stride, &xq, nullptr, y.data(), y_stride, m};
    auto* gemm = format == WeightFormat::kQ8 ? kernels.gemm_q8 : kernels.gemm_q4;
    gemm(args, 0, w.panels / 2);
    gemm(args, w.panels / 2, w.panels);

    // The f16 at byte `at` of weight (kk, col)'s block and column (kernels.h's layout).
    auto half_at = [&](int kk, int col, std::size_t at) {
        std::uint16_t bits;
        std::memcpy(&bits,
                    w.panel(col / kPanelWidth) +
                        static_cast<std::size_t>(kk / kQ8Block) * w.block_bytes() + at +
                        (col % kPanelWidth) * 2,
                    2);
        return static_cast<double>(f16_to_f32(bits));
    };
    for (int r = 0; r < m; ++r) {
        for (int col = 0; col < n; ++col) {
            double expected = 0.0, magnitude = 0.0;
            for (int kk = 0; kk < k; ++kk) {
                const std::size_t slot = static_cast<std::size_t>(r) * blocks + kk / kQ8Block;
                const double xv =
                    static_cast<double>(expected_q.values[slot * kQ8Block + kk % kQ8Block]) *
                    expected_q.scales[slot];
                const double weight = packed.element(kk, col);
                const double c = half_at(kk, col, kQ8ScaleBytes);  // weight - c is d q
                expected += xv * weight;
                magnitude += std::abs(xv) * (std::abs(weight - c) + std::abs(c));
            }
            const float got = y[static_cast<std::size_t>(r) * y_stride + col];
            ASSERT_NEAR(got, expected, 2e-6 * magnitude + 1e-30)
                << "row " << r << " column " << col;
        }
        for (int col = n; col < y_stride; ++col)
            ASSERT_EQ(y[static_cast<std::size_t>(r) * y_stride + col], kSentinel)
                << "wrote past column " << n;
    }
}

TEST(Kernels, GemmWithBlockBiasesMatchesReferenceOnEveryTier) {
    struct Case {
        DType stored;
        WeightFormat format;
    };
    constexpr Case kCases[] = {{DType::kQ4_K, WeightFormat::kQ4},
                               {DType::kQ4_K, WeightFormat::kQ8},
                               {DType::kQ5_K, WeightFormat::kQ8},
                               {DType::kQ5_1, WeightFormat::kQ8}};
    constexpr Shape kBiasShapes[] = {{1, 256, 33}, {3, 512, 64}, {5, 256, 70}, {13, 768, 97}};
    for (Isa isa : tiers())
        for (const auto [stored, format] : kCases)
            for (const Shape& s : kBiasShapes)
                check_gemm_with_block_biases(isa, stored, format, s.m, s.k, s.n);
}

// End to end, q8 and q4 stay within the error their two quantizations allow: per term
// |x||dw| + |w||dx| + |dw||dx| with |dw| the weight's own error and |dx| <= step_x / 2.
void check_quantized_product_error(WeightFormat format) {
    SCOPED_TRACE(format_name(format));
    WorkerPool pool(1);
    const Shape s{4, 300, 50};
    const PackedCase c = make_packed(s.k, s.n, MatrixLayout::kInOut, format, 5, pool);
    const PackedCase exact =
        make_packed(s.k, s.n, MatrixLayout::kInOut, WeightFormat::kF32, 5, pool);
    const auto x = random_floats(static_cast<std::size_t>(s.m) * s.k, -3.0f, 3.0f, 6);
    // Steps of ~1/127 (q8) or 1/8 (q4) of the block's largest |w| <= 1; q4 may clamp a whole step.
    const double max_weight_error = format == WeightFormat::kQ8 ? 0.01 : 0.13;
    const auto q = reference_quantize(x, s.m, s.k, s.k);
    for (Isa isa : tiers()) {
        SCOPED_TRACE(tier_name(isa));
        const KernelTable& kernels = kernel_table(isa);
        const int blocks = c.packed.view().q8_blocks();
        std::vector<std::int8_t> values(static_cast<std::size_t>(s.m) * blocks * kQ8Block);
        std::vector<float> scales(static_cast<std::size_t>(s.m) * blocks);
        std::vector<std::int32_t> offsets(scales.size());
        const QuantizedRows xq{s.m, blocks, values.data(), scales.data(), offsets.data()};
        kernels.quantize_rows(x.data(), s.k, s.k, 0, s.m, xq);
        std::vector<float> y(static_cast<std::size_t>(s.m) * s.n);
        GemmArgs args{&c.packed.view(), x.data(), s.k, &xq, nullptr, y.data(), s.n, s.m};
        (format == WeightFormat::kQ8 ? kernels.gemm_q8 : kernels.gemm_q4)(args, 0,
                                                                          c.packed.view().panels);
        for (int r = 0; r < s.m; ++r)
            for (int col = 0; col < s.n; ++col) {
                double exact_sum = 0.0, bound = 0.0;
                for (int kk = 0; kk < s.k; ++kk) {
                    const double w = exact.packed.element(kk, col),
                                 xv = x[static_cast<std::size_t>(r) * s.k + kk];
                    const double dw = std::abs(c.packed.element(kk, col) - w);
                    const double dx =
                        q.scales[static_cast<std::size_t>(r) * blocks + kk / kQ8Block] / 2.0;
                    EXPECT_LE(dw, max_weight_error);
                    exact_sum += xv * w;
                    bound += std::abs(xv) * dw + std::abs(w) * dx + dw * dx;
                }
                ASSERT_NEAR(y[static_cast<std::size_t>(r) * s.n + col], exact_sum, bound + 1e-4)
                    << "row " << r << " column " << col;
            }
    }
}

TEST(Kernels, QuantizedProductErrorIsBoundedByTheQuantizationSteps) {
    for (WeightFormat format : {WeightFormat::kQ8, WeightFormat::kQ4})
        check_quantized_product_error(format);
}

TEST(Kernels, QuantizeRowsHandlesZeroAndExtremeRows) {
    const int k = 40;
    std::vector<float> x(3 * k, 0.0f);
    for (int i = 0; i < k; ++i) {
        x[k + i] = i % 2 == 0 ? 1e30f : -1e30f;  // huge values
        x[2 * k + i] = static_cast<float>(i) - 20.0f;
    }
    for (Isa isa : tiers()) {
        SCOPED_TRACE(tier_name(isa));
        const int blocks = 2;
        std::vector<std::int8_t> values(3 * blocks * kQ8Block, 5);
        std::vector<float> scales(3 * blocks, -1.0f);
        std::vector<std::int32_t> offsets(3 * blocks, 7);
        const QuantizedRows xq{3, blocks, values.data(), scales.data(), offsets.data()};
        kernel_table(isa).quantize_rows(x.data(), k, k, 0, 3, xq);
        const auto expected = reference_quantize(x, 3, k, k);
        EXPECT_EQ(values, expected.values);
        EXPECT_EQ(scales, expected.scales);
        EXPECT_EQ(offsets, expected.offsets);
        EXPECT_EQ(scales[0], 0.0f);            // an all-zero block has scale 0 and all-zero values
        EXPECT_EQ(values[kQ8Block * 2], 127);  // +1e30 maps to +127
        EXPECT_EQ(values[kQ8Block * 2 + 1], -127);
    }
}

TEST(Kernels, LayerNormMatchesReference) {
    for (Isa isa : tiers())
        for (int cols : {1, 7, 16, 45, 768}) {
            SCOPED_TRACE(tier_name(isa) + ", cols " + std::to_string(cols));
            const auto x = random_floats(cols, -3.0f, 5.0f, cols);
            const auto gamma = random_floats(cols, 0.5f, 1.5f, 2),
                       beta = random_floats(cols, -1.0f, 1.0f, 3);
            std::vector<float> y(cols + 1, 777.0f);
            kernel_table(isa).layer_norm(x.data(), gamma.data(), beta.data(), 1e-5f, cols,
                                         y.data());
            double mean = 0.0, var = 0.0;
            for (float v : x) mean += v;
            mean /= cols;
            for (float v : x) var += (v - mean) * (v - mean);
            var /= cols;
            for (int c = 0; c < cols; ++c) {
                const double expected = (x[c] - mean) / std::sqrt(var + 1e-5) * gamma[c] + beta[c];
                ASSERT_NEAR(y[c], expected, 2e-5 * (1.0 + std::abs(expected))) << "column " << c;
            }
            EXPECT_EQ(y[cols], 777.0f);
            // In place gives the same result.
            std::vector<float> in_place = x;
            kernel_table(isa).layer_norm(in_place.data(), gamma.data(), beta.data(), 1e-5f, cols,
                                         in_place.data());
            for (int c = 0; c < cols; ++c) EXPECT_EQ(in_place[c], y[c]);
        }
}

double reference_activation(Activation kind, double x) {
    switch (kind) {
        case Activation::kGeluNew:
            return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
        case Activation::kGeluFast:
            return 0.5 * x * (1.0 + std::tanh(x * 0.7978845608028654 * (1.0 + 0.044715 * x * x)));
        case Activation::kGelu:
            return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
        case Activation::kRelu:
            return x > 0 ? x : 0.0;
        case Activation::kSilu:
            return x / (1.0 + std::exp(-x));
    }
    return x;
}

TEST(Kernels, ActivationsMatchReference) {
    auto x = random_floats(1000, -12.0f, 12.0f, 9);
    for (float special : {0.0f, -0.0f, 1e-6f, -1e-6f, 30.0f, -30.0f, 100.0f, -100.0f})
        x.push_back(special);
    for (Isa isa : tiers())
        for (Activation kind : {Activation::kGeluNew, Activation::kGeluFast, Activation::kGelu,
                                Activation::kRelu, Activation::kSilu}) {
            SCOPED_TRACE(tier_name(isa) + ", activation " + std::to_string(static_cast<int>(kind)));
            std::vector<float> y = x;
            kernel_table(isa).activation(kind, y.data(),
                                         y.size() - 3);  // a tail that is no whole vector
            for (std::size_t i = 0; i < x.size(); ++i) {
                if (i >= y.size() - 3) {
                    ASSERT_EQ(y[i], x[i]) << "touched element " << i << " beyond the count";
                    continue;
                }
                const double expected = reference_activation(kind, x[i]);
                ASSERT_NEAR(y[i], expected, 1e-6 + 2e-6 * std::abs(expected)) << "x = " << x[i];
            }
        }
}

TEST(Kernels, AddIsExact) {
    const auto x = random_floats(77, -1.0f, 1.0f, 1), y = random_floats(77, -1.0f, 1.0f, 2);
    for (Isa isa : tiers()) {
        std::vector<float> sum = x;
        kernel_table(isa).add(sum.data(), y.data(), sum.size());
        for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(sum[i], x[i] + y[i]) << tier_name(isa);
    }
}

TEST(Kernels, SumMatchesReference) {
    const auto x = random_floats(1001, 0.0f, 1.0f, 4);
    for (Isa isa : tiers())
        for (std::size_t count : {0u, 1u, 15u, 64u, 1001u}) {
            double expected = 0.0;
            for (std::size_t i = 0; i < count; ++i) expected += x[i];
            EXPECT_NEAR(kernel_table(isa).sum(x.data(), count), expected, 1e-5 * (1.0 + expected))
                << tier_name(isa) << ", count " << count;
        }
}

TEST(Kernels, HalfConversionsAreExactForEveryPattern) {
    std::vector<std::uint16_t> patterns(65536);
    std::iota(patterns.begin(), patterns.end(), 0);
    for (Isa isa : tiers()) {
        SCOPED_TRACE(tier_name(isa));
        std::vector<float> f16(patterns.size()), bf16(patterns.size());
        kernel_table(isa).f16_to_f32(patterns.data(), patterns.size() - 5, f16.data());
        kernel_table(isa).bf16_to_f32(patterns.data(), patterns.size() - 5, bf16.data());
        for (std::size_t i = 0; i + 5 < patterns.size(); ++i) {
            const float expected_f16 = f16_to_f32(patterns[i]),
                        expected_bf16 = bf16_to_f32(patterns[i]);
            if (std::isnan(expected_f16)) {
                ASSERT_TRUE(std::isnan(f16[i])) << "f16 pattern " << i;
            } else {
                ASSERT_EQ(std::bit_cast<std::uint32_t>(f16[i]),
                          std::bit_cast<std::uint32_t>(expected_f16))
                    << "f16 pattern " << i;
            }
            if (std::isnan(expected_bf16)) {
                ASSERT_TRUE(std::isnan(bf16[i])) << "bf16 pattern " << i;
            } else {
                ASSERT_EQ(std::bit_cast<std::uint32_t>(bf16[i]),
                          std::bit_cast<std::uint32_t>(expected_bf16))
                    << "bf16 pattern " << i;
            }
        }
    }
}

// f32 -> f16 / bf16 round to nearest, ties to even: every representable value maps to itself,
// values between two neighbours go to the nearer, midpoints to the one with an even mantissa.
TEST(Conversions, NarrowingRoundsToNearestEven) {
    for (std::uint32_t bits = 0; bits < 0x7c00; ++bits) {  // finite non-negative halves
        const auto h = static_cast<std::uint16_t>(bits);
        const float value = f16_to_f32(h);
        ASSERT_EQ(f32_to_f16(value), h);
        ASSERT_EQ(f32_to_f16(-value), h | 0x8000u);
        const float next =
            bits + 1 < 0x7c00 ? f16_to_f32(static_cast<std::uint16_t>(bits + 1)) : 65536.0f;
        const double midpoint = (static_cast<double>(value) + next) / 2.0;
        const auto even = static_cast<std::uint16_t>((bits % 2 == 0) ? bits : bits + 1);
        ASSERT_EQ(f32_to_f16(static_cast<float>(midpoint)), even)
            << "midpoint above pattern " << bits;
        ASSERT_EQ(f32_to_f16(std::nextafter(static_cast<float>(midpoint), 0.0f)), h);
    }
    EXPECT_EQ(f32_to_f16(1e10f), 0x7c00u);
    EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::infinity()), 0xfc00u);
    EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::numeric_limits<float>::quiet_NaN()))));
    EXPECT_EQ(f32_to_f16(1e-9f), 0u);  // below half the smallest subnormal

    for (std::uint32_t bits = 0; bits < 0x7f80; bits += 7) {
        const auto b = static_cast<std::uint16_t>(bits);
        const float value = bf16_to_f32(b);
        ASSERT_EQ(f32_to_bf16(value), b);
        const float next = bf16_to_f32(static_cast<std::uint16_t>(bits + 1));
        const double midpoint = (static_cast<double>(value) + next) / 2.0;
        ASSERT_EQ(f32_to_bf16(static_cast<float>(midpoint)), (bits % 2 == 0) ? b : b + 1);
    }
    EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80u);  // rounds up to infinity
    EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

// A paged KV cache in the kernels' layout for one sequence of `length` tokens, its blocks
// scattered in the pool in a shuffled order.
struct KvCase {
    int n_embd, block_tokens, length;
    std::vector<float> keys, values;  // [length, n_embd], the logical cache
    std::vector<float> pool;
    std::vector<int> table;
    std::size_t block_stride() const { return static_cast<std::size_t>(2) * block_tokens * n_embd; }
};
KvCase make_kv(int n_embd, int block_tokens, int length, unsigned seed) {
    KvCase kv{n_embd, block_tokens, length, {}, {}, {}, {}};
    kv.keys = random_floats(static_cast<std::size_t>(length) * n_embd, -1.0f, 1.0f, seed);
    kv.values = random_floats(kv.keys.size(), -1.0f, 1.0f, seed + 1);
    const int blocks = (length + block_tokens - 1) / block_tokens;
    kv.table = scattered_blocks(blocks, 2, seed);
    kv.pool.assign(static_cast<std::size_t>(blocks + 2) * kv.block_stride(), std::nanf(""));
    for (int t = 0; t < length; ++t) {
        float* block = kv.pool.data() + kv.table[t / block_tokens] * kv.block_stride();
        for (int c = 0; c < n_embd; ++c) {
            block[static_cast<std::size_t>(c) * block_tokens + t % block_tokens] =
                kv.keys[static_cast<std::size_t>(t) * n_embd + c];
            block[static_cast<std::size_t>(block_tokens) * n_embd +
                  static_cast<std::size_t>(t % block_tokens) * n_embd + c] =
                kv.values[static_cast<std::size_t>(t) * n_embd + c];
        }
    }
    return kv;
}

TEST(Kernels, AttentionMatchesReference) {
    for (Isa isa : tiers())
        for (const AttentionCase& c : attention_cases()) {
            SCOPED_TRACE(describe(isa, c));
            const int n_embd = c.n_head * c.head_dim;
            const int length = c.first_position + c.rows;
            const KvCase kv = make_kv(n_embd, c.block_tokens, length, 21);
            const int batch_rows = c.rows + 1;  // the tile starts at batch row 1
            const auto qkv =
                random_floats(static_cast<std::size_t>(batch_rows) * 3 * n_embd, -1.0f, 1.0f, 22);
            std::vector<int> positions(batch_rows, -1);
            for (int i = 0; i < c.rows; ++i) positions[1 + i] = c.first_position + i;
            std::vector<float> out(static_cast<std::size_t>(batch_rows) * n_embd, 55.0f);
            const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
            const AttentionArgs args{
                qkv.data(),     3 * n_embd,        out.data(),     n_embd, positions.data(),
                kv.pool.data(), kv.block_stride(), c.block_tokens, n_embd, c.head_dim,
                scale};
            for (int head = 0; head < c.n_head; ++head)
                kernel_table(isa).attention(args, {1, c.rows, head, kv.table.data()});
            for (int i = 0; i < c.rows; ++i)
                for (int head = 0; head < c.n_head; ++head) {
                    const float* q = qkv.data() + static_cast<std::size_t>(1 + i) * 3 * n_embd +
                                     head * c.head_dim;
                    const int visible = c.first_position + i + 1;
                    std::vector<double> weights(visible);
                    double max_score = -1e300, sum = 0.0;
                    for (int t = 0; t < visible; ++t) {
                        double dot = 0.0;
                        for (int d = 0; d < c.head_dim; ++d)
                            dot += q[d] * kv.keys[static_cast<std::size_t>(t) * n_embd +
                                                  head * c.head_dim + d];
                        weights[t] = dot * scale;
                        max_score = std::max(max_score, weights[t]);
                    }
                    for (double& w : weights) sum += (w = std::exp(w - max_score));
                    for (int d = 0; d < c.head_dim; ++d) {
                        double expected = 0.0;
                        for (int t = 0; t < visible; ++t)
                            expected += weights[t] / sum *
                                        kv.values[static_cast<std::size_t>(t) * n_embd +
                                                  head * c.head_dim + d];
                        ASSERT_NEAR(
                            out[static_cast<std::size_t>(1 + i) * n_embd + head * c.head_dim + d],
                            expected, 2e-5)
                            << "row " << i << " head " << head << " dim " << d;
                    }
                }
            for (int col = 0; col < n_embd; ++col)
                ASSERT_EQ(out[col], 55.0f) << "wrote to a row outside the tile";
        }
}

TEST(CpuFeatures, EnvironmentSelectsTheTier) {
    const char* saved = std::getenv("LLMSERVE_CPU_ISA");
    const std::string previous = saved != nullptr ? saved : "";
    setenv("LLMSERVE_CPU_ISA", "scalar", 1);
    EXPECT_EQ(default_isa(), Isa::kScalar);
    setenv("LLMSERVE_CPU_ISA", "sse9", 1);
    try {
        default_isa();
        ADD_FAILURE() << "an unknown tier was accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(e.what()).find("sse9"), std::string::npos) << e.what();
    }
    for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
        setenv("LLMSERVE_CPU_ISA", std::string(to_string(isa)).c_str(), 1);
        if (isa_supported(isa)) {
            EXPECT_EQ(default_isa(), isa);
        } else {
            EXPECT_THROW(default_isa(), Error);
        }
    }
    unsetenv("LLMSERVE_CPU_ISA");
    EXPECT_EQ(default_isa(), best_isa());
    if (!previous.empty()) setenv("LLMSERVE_CPU_ISA", previous.c_str(), 1);
    EXPECT_EQ(supported_isas().front(), Isa::kScalar);
    EXPECT_EQ(supported_isas().back(), best_isa());
}

}  // namespace
}  // namespace llmserve::backend::cpu
