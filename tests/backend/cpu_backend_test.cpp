// The CPU backend as the model drives it: work split over threads gives the same bits as one
// thread, for every format and tier; embeddings read back the packed values; format names.
#include "backend/cpu/cpu_backend.h"

#include "backend/cpu/packed_matrix.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "common/dtype.h"
#include "common/error.h"
#include "tests/backend/kernel_test_support.h"

namespace llmserve::backend::cpu {
namespace {

using namespace testing;  // the shared kernel-test helpers of kernel_test_support.h

constexpr WeightFormat kFormats[] = {WeightFormat::kF32, WeightFormat::kF16, WeightFormat::kBF16,
                                     WeightFormat::kQ8};

std::vector<float> run_linear(Backend& backend, const io::TensorView& tensor, MatrixLayout layout,
                              WeightFormat format, const std::vector<float>& x, int m) {
    auto weight = backend.upload_matrix(tensor, layout, format);
    const int k = weight->in_features(), n = weight->out_features();
    auto in = backend.allocate(x.size());
    std::memcpy(in->data(), x.data(), x.size() * sizeof(float));
    auto out = backend.allocate(static_cast<std::size_t>(m) * n);
    const auto bias_values = random_floats(n, -1.0f, 1.0f, 8);
    io::TensorView bias_view =
        tensor_view(std::as_bytes(std::span(bias_values)), DType::kF32, n, 1);
    bias_view.shape = {n};
    auto bias = backend.upload_vector(bias_view);
    backend.linear({in->data(), m, k}, *weight, bias.get(), {out->data(), m, n});
    return {out->data(), out->data() + out->size()};
}

TEST(CpuBackend, ThreadedLinearEqualsSingleThreadedBitForBit) {
    const int k = 200, n = 1000;  // 31.25 panels: uneven chunks and a partial last panel
    const auto stored = random_floats(static_cast<std::size_t>(k) * n, -1.0f, 1.0f, 1);
    const auto tensor = tensor_view(std::as_bytes(std::span(stored)), DType::kF32, k, n);
    for (Isa isa : tiers()) {
        auto one = make_cpu_backend(1, isa);
        auto three = make_cpu_backend(3, isa);
        EXPECT_EQ(three->threads(), 3);
        for (WeightFormat format : kFormats)
            for (int m : {1, 7, 40}) {
                SCOPED_TRACE(tier_name(isa) + ", " + std::string(to_string(format)) + ", m " +
                             std::to_string(m));
                const auto x = random_floats(static_cast<std::size_t>(m) * k, -2.0f, 2.0f, m);
                const auto expected = run_linear(*one, tensor, MatrixLayout::kInOut, format, x, m);
                const auto got = run_linear(*three, tensor, MatrixLayout::kInOut, format, x, m);
                ASSERT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0);
                if (format != WeightFormat::kF32) continue;
                const auto bias_values = random_floats(n, -1.0f, 1.0f, 8);
                for (int r = 0; r < m; ++r)
                    for (int c = 0; c < n; c += 37) {
                        double sum = bias_values[c], magnitude = std::abs(sum);
                        for (int i = 0; i < k; ++i) {
                            const double term =
                                static_cast<double>(x[r * k + i]) * stored[i * n + c];
                            sum += term;
                            magnitude += std::abs(term);
                        }
                        ASSERT_NEAR(got[r * n + c], sum, 2e-6 * magnitude)
                            << "row " << r << " column " << c;
                    }
            }
    }
}

// The fused epilogues give the bits of the separate passes they replace: the activation kernel
// over the biased product, and the residual plus the biased product.
TEST(CpuBackend, LinearEpiloguesEqualTheSeparatePasses) {
    const int k = 72, n = 1000;  // a partial last panel and several chunks per thread
    const auto stored = random_floats(static_cast<std::size_t>(k) * n, -1.0f, 1.0f, 11);
    const auto tensor = tensor_view(std::as_bytes(std::span(stored)), DType::kF32, k, n);
    const auto bias_values = random_floats(n, -1.0f, 1.0f, 12);
    io::TensorView bias_view =
        tensor_view(std::as_bytes(std::span(bias_values)), DType::kF32, n, 1);
    bias_view.shape = {n};
    for (Isa isa : tiers()) {
        auto backend = make_cpu_backend(2, isa);
        auto bias = backend->upload_vector(bias_view);
        for (WeightFormat format : kFormats) {
            auto weight = backend->upload_matrix(tensor, MatrixLayout::kInOut, format);
            for (int m : {1, 7}) {
                SCOPED_TRACE(tier_name(isa) + ", " + std::string(to_string(format)) + ", m " +
                             std::to_string(m));
                const std::size_t size = static_cast<std::size_t>(m) * n;
                const auto x = random_floats(static_cast<std::size_t>(m) * k, -2.0f, 2.0f, m + 20);
                const auto residual = random_floats(size, -3.0f, 3.0f, m + 30);
                auto in = backend->allocate(x.size());
                std::copy(x.begin(), x.end(), in->data());
                const MatrixView x_view{in->data(), m, k};
                auto plain = backend->allocate(size);
                backend->linear(x_view, *weight, bias.get(), {plain->data(), m, n});
                const std::vector<float> product(plain->data(), plain->data() + size);

                for (Activation kind :
                     {Activation::kGeluNew, Activation::kGelu, Activation::kSilu}) {
                    std::vector<float> expected = product;
                    kernel_table(isa).activation(kind, expected.data(), expected.size());
                    auto out = backend->allocate(size);
                    backend->linear(x_view, *weight, {.bias = bias.get(), .activation = kind},
                                    {out->data(), m, n});
                    ASSERT_EQ(std::memcmp(out->data(), expected.data(), size * sizeof(float)), 0)
                        << "activation " << static_cast<int>(kind);
                }

                auto accumulated = backend->allocate(size);
                std::copy(residual.begin(), residual.end(), accumulated->data());
                backend->linear(x_view, *weight, {.bias = bias.get(), .accumulate = true},
                                {accumulated->data(), m, n});
                for (std::size_t i = 0; i < size; ++i)
                    ASSERT_EQ(accumulated->data()[i], residual[i] + product[i]) << "element " << i;
            }
        }
    }
}

TEST(CpuBackend, LinearRejectsEpiloguesAndShapesThatDoNotFit) {
    auto backend = make_cpu_backend(1, Isa::kScalar);
    const auto stored = random_floats(8 * 4, -1.0f, 1.0f, 13);
    auto weight =
        backend->upload_matrix(tensor_view(std::as_bytes(std::span(stored)), DType::kF32, 8, 4),
                               MatrixLayout::kInOut, WeightFormat::kF32);
    auto x = backend->allocate(2 * 8), y = backend->allocate(2 * 8);
    auto expect_internal = [](const std::function<void()>& call, std::string_view needle) {
        try {
            call();
            ADD_FAILURE() << "accepted; expected an error mentioning '" << needle << "'";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::kInternal);
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    expect_internal(
        [&] {
            backend->linear({x->data(), 2, 8}, *weight,
                            {.activation = Activation::kRelu, .accumulate = true},
                            {y->data(), 2, 4});
        },
        "cannot be combined");
    expect_internal(
        [&] {
            backend->linear({x->data(), 2, 8}, *weight, nullptr, {y->data(), 2, 5});
        },
        "do not fit");
    expect_internal(
        [&] {
            backend->linear({x->data(), 2, 8}, *weight, nullptr, {x->data(), 2, 4});
        },
        "aliases");
}

TEST(CpuBackend, EmbeddingReadsTheStoredRows) {
    const int rows = 70, cols = 45;  // [out, in] as an embedding table is stored
    const auto stored = random_floats(static_cast<std::size_t>(rows) * cols, -1.0f, 1.0f, 2);
    std::vector<std::uint16_t> halves(stored.size());
    for (std::size_t i = 0; i < stored.size(); ++i) halves[i] = f32_to_f16(stored[i]);
    const auto f32_tensor = tensor_view(std::as_bytes(std::span(stored)), DType::kF32, rows, cols);
    const auto f16_tensor = tensor_view(std::as_bytes(std::span(halves)), DType::kF16, rows, cols);
    const std::vector<std::int32_t> ids = {0, 69, 5, 5, 33};
    for (Isa isa : tiers()) {
        auto backend = make_cpu_backend(2, isa);
        for (WeightFormat format : kFormats)
            for (const io::TensorView* tensor : {&f32_tensor, &f16_tensor}) {
                SCOPED_TRACE(tier_name(isa) + ", " + std::string(to_string(format)) + " from " +
                             std::string(llmserve::to_string(tensor->dtype)));
                auto table = backend->upload_matrix(*tensor, MatrixLayout::kOutIn, format);
                EXPECT_EQ(table->format(), format);
                EXPECT_EQ(table->in_features(), cols);
                EXPECT_EQ(table->out_features(), rows);
                auto out = backend->allocate(ids.size() * cols);
                backend->embedding(*table, ids, {out->data(), static_cast<int>(ids.size()), cols});
                for (std::size_t r = 0; r < ids.size(); ++r)
                    for (int c = 0; c < cols; ++c) {
                        const float source = tensor->dtype == DType::kF32
                                                 ? stored[ids[r] * cols + c]
                                                 : f16_to_f32(halves[ids[r] * cols + c]);
                        const float expected =
                            format == WeightFormat::kF16    ? f16_to_f32(f32_to_f16(source))
                            : format == WeightFormat::kBF16 ? bf16_to_f32(f32_to_bf16(source))
                                                            : source;
                        const float got = out->data()[r * cols + c];
                        if (format == WeightFormat::kQ8) {
                            ASSERT_NEAR(got, expected, 1.0 / 254 * 1.001)
                                << "row " << r << " col " << c;
                        } else {
                            ASSERT_EQ(got, expected) << "row " << r << " col " << c;
                        }
                    }
            }
    }
}

TEST(CpuBackend, AutoKeepsTheStoredDtype) {
    const auto stored = random_floats(64, -1.0f, 1.0f, 3);
    std::vector<std::uint16_t> halves(stored.size());
    for (std::size_t i = 0; i < stored.size(); ++i) halves[i] = f32_to_bf16(stored[i]);
    auto backend = make_cpu_backend(1, Isa::kScalar);
    EXPECT_EQ(backend
                  ->upload_matrix(tensor_view(std::as_bytes(std::span(stored)), DType::kF32, 8, 8),
                                  MatrixLayout::kInOut, WeightFormat::kAuto)
                  ->format(),
              WeightFormat::kF32);
    EXPECT_EQ(backend
                  ->upload_matrix(tensor_view(std::as_bytes(std::span(halves)), DType::kBF16, 8, 8),
                                  MatrixLayout::kInOut, WeightFormat::kAuto)
                  ->format(),
              WeightFormat::kBF16);
}

TEST(CpuBackend, WeightFormatNames) {
    for (WeightFormat format : {WeightFormat::kAuto, WeightFormat::kF32, WeightFormat::kF16,
                                WeightFormat::kBF16, WeightFormat::kQ8, WeightFormat::kQ4})
        EXPECT_EQ(parse_weight_format(to_string(format)), format);
    try {
        parse_weight_format("q3");
        ADD_FAILURE() << "q3 was accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
        EXPECT_EQ(e.param(), "dtype");
        EXPECT_NE(std::string(e.what()).find("q3"), std::string::npos);
    }
}

}  // namespace
}  // namespace llmserve::backend::cpu
