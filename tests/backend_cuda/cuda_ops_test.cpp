// Every CUDA backend operation against the CPU backend (itself checked against transformers) on
// random inputs. Where the GPU rounds (f16/bf16 GEMM inputs) the inputs are chosen exactly
// representable, so that both sides multiply the same numbers and every partial sum is exact:
// results must then be bit-identical, which pins down layouts, transposes and indexing. Outputs
// start as NaN so an element the GPU never writes cannot pass.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>

#include "backend/backend.h"
#include "common/error.h"
#include "tests/backend_cuda/cuda_test_support.h"

namespace llmserve::testing {
namespace {

using backend::Activation;
using backend::AttentionBatch;
using backend::AttentionParams;
using backend::Backend;
using backend::DeviceBuffer;
using backend::KvFormat;
using backend::MatrixLayout;
using backend::MatrixView;
using backend::WeightFormat;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::uint16_t exact_f16_bits(float value) {
    const __half h = __float2half_rn(value);
    std::uint16_t bits;
    std::memcpy(&bits, &h, sizeof bits);
    if (f16_to_f32(bits) != value) throw std::logic_error("test value is not exact in f16");
    return bits;
}

std::uint16_t exact_bf16_bits(float value) {
    const __nv_bfloat16 b = __float2bfloat16_rn(value);
    std::uint16_t bits;
    std::memcpy(&bits, &b, sizeof bits);
    if (bf16_to_f32(bits) != value) throw std::logic_error("test value is not exact in bf16");
    return bits;
}

float round_to(DType type, float value) {
    switch (type) {
        case DType::kF16:
            return __half2float(__float2half_rn(value));
        case DType::kBF16:
            return __bfloat162float(__float2bfloat16_rn(value));
        case DType::kF32:
            return value;
        default:  // the tests hold float tensors only
            throw std::logic_error("round_to: not a float type");
    }
}

// A checkpoint tensor held in memory, stored as `dtype`.
struct HostTensor {
    std::vector<std::byte> bytes;
    io::TensorView view;

    HostTensor(std::vector<std::int64_t> shape, const std::vector<float>& values, DType dtype) {
        bytes.resize(values.size() * dtype_size(dtype));
        for (std::size_t i = 0; i < values.size(); ++i) {
            if (dtype == DType::kF32) {
                std::memcpy(bytes.data() + 4 * i, &values[i], 4);
                continue;
            }
            const std::uint16_t bits =
                dtype == DType::kF16 ? exact_f16_bits(values[i]) : exact_bf16_bits(values[i]);
            std::memcpy(bytes.data() + 2 * i, &bits, 2);
        }
        view.name = "test";
        view.file = "memory";
        view.dtype = dtype;
        view.shape = std::move(shape);
        view.data = bytes;
    }
};

// Multiples of 1/denominator in [-limit, limit] / denominator: exact in f16 and bf16 for limit <=
// 256.
std::vector<float> grid_values(std::mt19937& rng, std::size_t count, int limit, float denominator) {
    std::uniform_int_distribution<int> pick(-limit, limit);
    std::vector<float> values(count);
    for (auto& v : values) v = static_cast<float>(pick(rng)) / denominator;
    return values;
}

std::vector<float> normal_values(std::mt19937& rng, std::size_t count, float mean, float stddev) {
    std::normal_distribution<float> pick(mean, stddev);
    std::vector<float> values(count);
    for (auto& v : values) v = pick(rng);
    return values;
}

// A float32 device matrix holding `values` (rows x cols).
struct DeviceMatrix {
    std::unique_ptr<DeviceBuffer> buffer;
    MatrixView view;
};

DeviceMatrix upload(Backend& backend, const std::vector<float>& values, int rows, int cols) {
    HostTensor tensor({static_cast<std::int64_t>(values.size())}, values, DType::kF32);
    DeviceMatrix m{backend.upload_vector(tensor.view), {}};
    m.view = {m.buffer->data(), rows, cols};
    return m;
}

DeviceMatrix poisoned(Backend& backend, int rows, int cols) {
    return upload(backend, std::vector<float>(static_cast<std::size_t>(rows) * cols, kNaN), rows,
                  cols);
}

std::vector<float> download(Backend& backend, MatrixView m) {
    std::vector<float> host(static_cast<std::size_t>(m.rows) * m.cols);
    backend.copy_to_host(m, host.data());
    return host;
}

// |got - want| <= tolerance * (1 + |want|) everywhere (NaN fails); reports the worst element.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tolerance,
                  const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    double worst = 0.0;
    std::size_t worst_index = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double excess = std::abs(got[i] - want[i]) / (1.0 + std::abs(want[i]));
        if (!(excess <= worst)) {
            worst = excess;
            worst_index = i;
        }
    }
    EXPECT_LE(worst, tolerance) << what << ": element " << worst_index << " is " << got[worst_index]
                                << ", expected " << want[worst_index];
}

void expect_identical(const std::vector<float>& got, const std::vector<float>& want,
                      const std::string& what) {
    expect_close(got, want, 0.0, what);
}

class CudaOps : public CudaDeviceTest {
  protected:
    std::shared_ptr<Backend> cpu = backend::make_cpu_backend(1);
    std::mt19937 rng{1234};
};

TEST_F(CudaOps, LinearMatchesCpuExactlyForEveryFormatAndLayout) {
    struct Format {
        DType stored;
        WeightFormat format;
        std::size_t bytes_per_weight;
    };
    const Format formats[] = {
        {DType::kF32, WeightFormat::kAuto, 2}, {DType::kF32, WeightFormat::kF32, 4},
        {DType::kF32, WeightFormat::kF16, 2},  {DType::kF32, WeightFormat::kBF16, 2},
        {DType::kF16, WeightFormat::kAuto, 2}, {DType::kBF16, WeightFormat::kAuto, 2},
        {DType::kF16, WeightFormat::kF32, 4}};
    const int k = 96;
    for (const Format& f : formats) {
        for (MatrixLayout layout : {MatrixLayout::kInOut, MatrixLayout::kOutIn}) {
            for (int n : {80, 50}) {
                // |x| <= 2 and |w| <= 0.5 on grids of 2^-6 and 2^-8: products and sums of 96 of
                // them are exact in float32, whatever order either side adds them in.
                const auto weights = grid_values(rng, static_cast<std::size_t>(k) * n, 128, 256.0f);
                const std::vector<std::int64_t> shape = layout == MatrixLayout::kInOut
                                                            ? std::vector<std::int64_t>{k, n}
                                                            : std::vector<std::int64_t>{n, k};
                HostTensor tensor(shape, weights, f.stored);
                HostTensor bias_tensor({n}, grid_values(rng, n, 128, 64.0f), DType::kF32);
                auto w_gpu = cuda->upload_matrix(tensor.view, layout, f.format);
                auto w_cpu = cpu->upload_matrix(tensor.view, layout, WeightFormat::kAuto);
                EXPECT_EQ(w_gpu->in_features(), k);
                EXPECT_EQ(w_gpu->out_features(), n);
                EXPECT_EQ(w_gpu->resident_bytes(), weights.size() * f.bytes_per_weight);
                auto bias_gpu = cuda->upload_vector(bias_tensor.view);
                auto bias_cpu = cpu->upload_vector(bias_tensor.view);
                for (int m : {1, 5, 64}) {
                    for (bool with_bias : {false, true}) {
                        const std::string what =
                            fmt::format("stored {} as {}, {}, m {} n {}{}", to_string(f.stored),
                                        to_string(f.format),
                                        layout == MatrixLayout::kInOut ? "[in, out]" : "[out, in]",
                                        m, n, with_bias ? ", bias" : "");
                        const auto x =
                            grid_values(rng, static_cast<std::size_t>(m) * k, 128, 64.0f);
                        auto x_gpu = upload(*cuda, x, m, k);
                        auto x_cpu = upload(*cpu, x, m, k);
                        auto y_gpu = poisoned(*cuda, m, n);
                        auto y_cpu = poisoned(*cpu, m, n);
                        cuda->linear(x_gpu.view, *w_gpu, with_bias ? bias_gpu.get() : nullptr,
                                     y_gpu.view);
                        cpu->linear(x_cpu.view, *w_cpu, with_bias ? bias_cpu.get() : nullptr,
                                    y_cpu.view);
                        expect_identical(download(*cuda, y_gpu.view), download(*cpu, y_cpu.view),
                                         what);
                    }
                }
            }
        }
    }
}

// With arbitrary inputs the GEMM sees x rounded to the weight's type (and nothing worse: f32
// weights give a true float32 product, not TF32): the CPU result on the rounded x must agree to
// float32 accumulation error.
TEST_F(CudaOps, LinearRoundsItsInputToTheWeightType) {
    const int m = 9, k = 256, n = 40;
    for (DType type : {DType::kF16, DType::kBF16, DType::kF32}) {
        const auto weights = grid_values(rng, static_cast<std::size_t>(k) * n, 128, 256.0f);
        HostTensor tensor({k, n}, weights, type);
        // kAuto would halve f32 weights to f16; f32 must stay f32 (no TF32 either).
        const WeightFormat format = type == DType::kF32 ? WeightFormat::kF32 : WeightFormat::kAuto;
        auto w_gpu = cuda->upload_matrix(tensor.view, MatrixLayout::kInOut, format);
        auto w_cpu = cpu->upload_matrix(tensor.view, MatrixLayout::kInOut, WeightFormat::kAuto);
        const auto x = normal_values(rng, static_cast<std::size_t>(m) * k, 0.0f, 1.0f);
        std::vector<float> x_rounded(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) x_rounded[i] = round_to(type, x[i]);
        auto x_gpu = upload(*cuda, x, m, k);
        auto x_cpu = upload(*cpu, x_rounded, m, k);
        auto y_gpu = poisoned(*cuda, m, n);
        auto y_cpu = poisoned(*cpu, m, n);
        cuda->linear(x_gpu.view, *w_gpu, nullptr, y_gpu.view);
        cpu->linear(x_cpu.view, *w_cpu, nullptr, y_cpu.view);
        // Each output sums 256 products of size <= ~4 * 0.5: float32 order effects stay < 1e-4.
        expect_close(download(*cuda, y_gpu.view), download(*cpu, y_cpu.view), 1e-4,
                     std::string("x rounded to ") + std::string(to_string(type)));
    }
}

TEST_F(CudaOps, EmbeddingAndGatherMatchCpuExactly) {
    const int vocab = 37, cols = 96;
    for (DType stored : {DType::kF32, DType::kF16, DType::kBF16}) {
        for (WeightFormat format : {WeightFormat::kAuto, WeightFormat::kF32}) {
            HostTensor table({vocab, cols}, grid_values(rng, vocab * cols, 256, 64.0f), stored);
            auto t_gpu = cuda->upload_matrix(table.view, MatrixLayout::kOutIn, format);
            auto t_cpu = cpu->upload_matrix(table.view, MatrixLayout::kOutIn, WeightFormat::kAuto);
            std::vector<std::int32_t> ids = {0, vocab - 1, 5, 5, 17, 3, 0};
            auto out_gpu = poisoned(*cuda, static_cast<int>(ids.size()), cols);
            auto out_cpu = poisoned(*cpu, static_cast<int>(ids.size()), cols);
            cuda->embedding(*t_gpu, ids, out_gpu.view);
            cpu->embedding(*t_cpu, ids, out_cpu.view);
            expect_identical(download(*cuda, out_gpu.view), download(*cpu, out_cpu.view),
                             std::string("embedding stored ") + std::string(to_string(stored)));
        }
    }
    const auto x = normal_values(rng, 20 * 33, 0.0f, 1.0f);
    auto x_gpu = upload(*cuda, x, 20, 33);
    auto x_cpu = upload(*cpu, x, 20, 33);
    const std::vector<int> rows = {19, 0, 7, 7, 3};
    auto g_gpu = poisoned(*cuda, 5, 33);
    auto g_cpu = poisoned(*cpu, 5, 33);
    cuda->gather_rows(x_gpu.view, rows, g_gpu.view);
    cpu->gather_rows(x_cpu.view, rows, g_cpu.view);
    expect_identical(download(*cuda, g_gpu.view), download(*cpu, g_cpu.view), "gather_rows");
}

TEST_F(CudaOps, LayerNormMatchesCpu) {
    const int rows = 7;
    for (int cols : {48, 768, 1600}) {
        // A large mean against a small spread: a one-pass variance would lose it.
        const auto x = normal_values(rng, static_cast<std::size_t>(rows) * cols, 30.0f, 2.0f);
        const auto gamma = normal_values(rng, cols, 1.0f, 0.5f);
        const auto beta = normal_values(rng, cols, 0.0f, 0.5f);
        HostTensor g({cols}, gamma, DType::kF32), b({cols}, beta, DType::kF32);
        auto g_gpu = cuda->upload_vector(g.view), b_gpu = cuda->upload_vector(b.view);
        auto g_cpu = cpu->upload_vector(g.view), b_cpu = cpu->upload_vector(b.view);
        auto x_gpu = upload(*cuda, x, rows, cols);
        auto x_cpu = upload(*cpu, x, rows, cols);
        auto y_gpu = poisoned(*cuda, rows, cols);
        auto y_cpu = poisoned(*cpu, rows, cols);
        cuda->layer_norm(x_gpu.view, *g_gpu, *b_gpu, 1e-5f, y_gpu.view);
        cpu->layer_norm(x_cpu.view, *g_cpu, *b_cpu, 1e-5f, y_cpu.view);
        const auto want = download(*cpu, y_cpu.view);
        expect_close(download(*cuda, y_gpu.view), want, 2e-5, fmt::format("cols {}", cols));
        cuda->layer_norm(x_gpu.view, *g_gpu, *b_gpu, 1e-5f, x_gpu.view);  // in place
        expect_close(download(*cuda, x_gpu.view), want, 2e-5,
                     fmt::format("in place, cols {}", cols));
    }
}

TEST_F(CudaOps, RmsNormMatchesCpu) {
    const int rows = 7;
    for (int cols : {64, 896, 2048, 4100}) {
        const auto x = normal_values(rng, static_cast<std::size_t>(rows) * cols, 0.5f, 3.0f);
        const auto gamma = normal_values(rng, cols, 1.0f, 0.5f);
        HostTensor g({cols}, gamma, DType::kF32);
        auto g_gpu = cuda->upload_vector(g.view);
        auto g_cpu = cpu->upload_vector(g.view);
        auto x_gpu = upload(*cuda, x, rows, cols);
        auto x_cpu = upload(*cpu, x, rows, cols);
        auto y_gpu = poisoned(*cuda, rows, cols);
        auto y_cpu = poisoned(*cpu, rows, cols);
        cuda->rms_norm(x_gpu.view, *g_gpu, 1e-6f, y_gpu.view);
        cpu->rms_norm(x_cpu.view, *g_cpu, 1e-6f, y_cpu.view);
        const auto want = download(*cpu, y_cpu.view);
        // One float32 sum of squares (the CPU's is in double) rounded differently: ~1e-7.
        expect_close(download(*cuda, y_gpu.view), want, 2e-6, fmt::format("cols {}", cols));
        cuda->rms_norm(x_gpu.view, *g_gpu, 1e-6f, x_gpu.view);  // in place
        expect_close(download(*cuda, x_gpu.view), want, 2e-6,
                     fmt::format("in place, cols {}", cols));
    }
    // eps matters for rows near zero.
    const std::vector<float> small(64, 1e-4f), ones(64, 1.0f);
    HostTensor g({64}, ones, DType::kF32);
    auto g_gpu = cuda->upload_vector(g.view);
    auto g_cpu = cpu->upload_vector(g.view);
    auto x_gpu = upload(*cuda, small, 1, 64);
    auto x_cpu = upload(*cpu, small, 1, 64);
    cuda->rms_norm(x_gpu.view, *g_gpu, 1e-5f, x_gpu.view);
    cpu->rms_norm(x_cpu.view, *g_cpu, 1e-5f, x_cpu.view);
    expect_close(download(*cuda, x_gpu.view), download(*cpu, x_cpu.view), 2e-6, "eps");
}

TEST_F(CudaOps, GatedActivationMatchesCpu) {
    const int rows = 5;
    for (int width : {1, 96, 4864}) {
        const auto gate_up =
            normal_values(rng, static_cast<std::size_t>(rows) * 2 * width, 0.0f, 3.0f);
        auto in_gpu = upload(*cuda, gate_up, rows, 2 * width);
        auto in_cpu = upload(*cpu, gate_up, rows, 2 * width);
        for (Activation kind : {Activation::kSilu, Activation::kGeluNew, Activation::kGelu,
                                Activation::kGeluFast, Activation::kRelu}) {
            auto out_gpu = poisoned(*cuda, rows, width);
            auto out_cpu = poisoned(*cpu, rows, width);
            cuda->gated_activation(in_gpu.view, kind, out_gpu.view);
            cpu->gated_activation(in_cpu.view, kind, out_cpu.view);
            expect_close(download(*cuda, out_gpu.view), download(*cpu, out_cpu.view), 1e-5,
                         fmt::format("width {}, activation {}", width, static_cast<int>(kind)));
        }
    }
    auto in = poisoned(*cuda, 2, 8);
    auto out = poisoned(*cuda, 2, 3);
    EXPECT_THROW(cuda->gated_activation(in.view, Activation::kSilu, out.view), Error);
}

// The epilogues on grid values (the products are exact on both sides): accumulating into a
// residual with a bias is exact, the activations agree to their float32 formulas.
TEST_F(CudaOps, LinearEpiloguesAndAddMatchCpu) {
    const int rows = 13, k = 64, n = 777;
    HostTensor tensor({k, n}, grid_values(rng, static_cast<std::size_t>(k) * n, 128, 256.0f),
                      DType::kF32);
    HostTensor bias_tensor({n}, grid_values(rng, n, 128, 64.0f), DType::kF32);
    auto w_gpu = cuda->upload_matrix(tensor.view, MatrixLayout::kInOut, WeightFormat::kF32);
    auto w_cpu = cpu->upload_matrix(tensor.view, MatrixLayout::kInOut, WeightFormat::kF32);
    auto bias_gpu = cuda->upload_vector(bias_tensor.view);
    auto bias_cpu = cpu->upload_vector(bias_tensor.view);
    const auto x = grid_values(rng, static_cast<std::size_t>(rows) * k, 128, 32.0f);
    auto x_gpu = upload(*cuda, x, rows, k);
    auto x_cpu = upload(*cpu, x, rows, k);
    for (Activation kind : {Activation::kGeluNew, Activation::kGelu, Activation::kGeluFast,
                            Activation::kRelu, Activation::kSilu}) {
        auto y_gpu = poisoned(*cuda, rows, n);
        auto y_cpu = poisoned(*cpu, rows, n);
        cuda->linear(x_gpu.view, *w_gpu, {.bias = bias_gpu.get(), .activation = kind}, y_gpu.view);
        cpu->linear(x_cpu.view, *w_cpu, {.bias = bias_cpu.get(), .activation = kind}, y_cpu.view);
        expect_close(download(*cuda, y_gpu.view), download(*cpu, y_cpu.view), 1e-5,
                     fmt::format("activation {}", static_cast<int>(kind)));
    }
    const auto residual = grid_values(rng, static_cast<std::size_t>(rows) * n, 128, 16.0f);
    for (bool with_bias : {false, true}) {
        auto y_gpu = upload(*cuda, residual, rows, n);
        auto y_cpu = upload(*cpu, residual, rows, n);
        cuda->linear(x_gpu.view, *w_gpu,
                     {.bias = with_bias ? bias_gpu.get() : nullptr, .accumulate = true},
                     y_gpu.view);
        cpu->linear(x_cpu.view, *w_cpu,
                    {.bias = with_bias ? bias_cpu.get() : nullptr, .accumulate = true}, y_cpu.view);
        expect_identical(download(*cuda, y_gpu.view), download(*cpu, y_cpu.view),
                         with_bias ? "accumulate with bias" : "accumulate");
    }

    const auto a = normal_values(rng, static_cast<std::size_t>(rows) * n, 0.0f, 3.0f);
    const auto b = normal_values(rng, static_cast<std::size_t>(rows) * n, 0.0f, 3.0f);
    auto a_gpu = upload(*cuda, a, rows, n), b_gpu = upload(*cuda, b, rows, n);
    auto a_cpu = upload(*cpu, a, rows, n), b_cpu = upload(*cpu, b, rows, n);
    cuda->add(a_gpu.view, b_gpu.view);
    cpu->add(a_cpu.view, b_cpu.view);
    expect_identical(download(*cuda, a_gpu.view), download(*cpu, a_cpu.view), "add");
}

// One sequence's block table and the positions it has cached.
struct Sequence {
    std::vector<int> table;
};

// An attention configuration, built on both backends from the same numbers.
struct AttentionSetup {
    int n_head = 0, n_kv_head = 0, head_dim = 0;
    int window = 0;
    bool qk_norm = false;
    int rotary_dim = 0;  // 0: no rotary embedding
    float rope_theta = 10000.0f;
    float attention_factor = 1.0f;

    std::string describe() const {
        return fmt::format("H {}, KV {}, D {}, window {}{}, rotary {} (theta {}, factor {})",
                           n_head, n_kv_head, head_dim, window, qk_norm ? ", qk norm" : "",
                           rotary_dim, rope_theta, attention_factor);
    }
};

// The parameter buffers of one backend and the AttentionParams pointing at them.
struct BackendParams {
    DeviceMatrix q_norm, k_norm, inv_freq;
    AttentionParams params;

    BackendParams(Backend& backend, const AttentionSetup& s, const std::vector<float>& q_gamma,
                  const std::vector<float>& k_gamma, const std::vector<float>& frequencies)
        : q_norm(upload(backend, q_gamma, 1, s.head_dim)),
          k_norm(upload(backend, k_gamma, 1, s.head_dim)),
          inv_freq(upload(backend, frequencies, 1, static_cast<int>(frequencies.size()))) {
        params = {.n_head = s.n_head,
                  .n_kv_head = s.n_kv_head,
                  .head_dim = s.head_dim,
                  .scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim)),
                  .window = s.window,
                  .rotary = {}};
        if (s.qk_norm) {
            params.q_norm = q_norm.buffer.get();
            params.k_norm = k_norm.buffer.get();
            params.norm_eps = 1e-6f;
        }
        if (s.rotary_dim > 0)
            params.rotary = {inv_freq.buffer.get(), s.rotary_dim, s.attention_factor};
    }
};

std::vector<float> inverse_frequencies(const AttentionSetup& s) {
    std::vector<float> frequencies(std::max(s.rotary_dim / 2, 1), 0.0f);
    for (int i = 0; i < s.rotary_dim / 2; ++i)
        frequencies[i] = static_cast<float>(
            1.0 / std::pow(static_cast<double>(s.rope_theta), 2.0 * i / s.rotary_dim));
    return frequencies;
}

// Runs the same attention step on both backends and compares the outputs, and the q and k heads
// that attention normalises and rotates in place in qkv.
struct AttentionHarness {
    Backend& gpu;
    Backend& cpu;
    AttentionSetup setup;
    std::unique_ptr<backend::KvStorage> kv_gpu, kv_cpu;
    BackendParams params_gpu, params_cpu;
    int block_tokens;
    double tolerance;

    AttentionHarness(Backend& g, Backend& c, std::mt19937& rng, int layers, int blocks,
                     int block_tokens_, const AttentionSetup& s, KvFormat format)
        : gpu(g),
          cpu(c),
          setup(s),
          kv_gpu(g.allocate_kv(layers, blocks, block_tokens_, s.n_kv_head * s.head_dim, format)),
          kv_cpu(c.allocate_kv(layers, blocks, block_tokens_, s.n_kv_head * s.head_dim, format)),
          params_gpu(g, s, normal_values(rng, s.head_dim, 1.0f, 0.3f),
                     normal_values(rng, s.head_dim, 1.0f, 0.3f), inverse_frequencies(s)),
          params_cpu(c, s, download(g, params_gpu.q_norm.view), download(g, params_gpu.k_norm.view),
                     inverse_frequencies(s)),
          block_tokens(block_tokens_),
          // Weighted means of values ~N(0, 1): float32 softmax and sums in another order. An f16
          // cache holds the same rounded keys and values on both sides, except where normalising
          // and rotating k (float32 on both sides, last-bit differences) lands a key on either
          // side of an f16 rounding boundary: one element then differs by 2^-11 relative, which
          // moves a score by about 1e-4.
          tolerance(format == KvFormat::kF16 && (s.qk_norm || s.rotary_dim > 0) ? 5e-4 : 2e-5) {}

    // rows: (sequence index, position) in batch order.
    void step(std::mt19937& rng, const std::vector<Sequence>& sequences,
              const std::vector<std::pair<int, int>>& rows, int layer, const std::string& what) {
        std::vector<int> positions, row_sequence;
        for (auto [sequence, position] : rows) {
            row_sequence.push_back(sequence);
            positions.push_back(position);
        }
        std::vector<std::span<const int>> tables;
        for (const Sequence& s : sequences) tables.emplace_back(s.table);
        const AttentionBatch batch{positions, row_sequence, tables, block_tokens};
        const int m = static_cast<int>(rows.size());
        const int width = (setup.n_head + 2 * setup.n_kv_head) * setup.head_dim;
        const int out_width = setup.n_head * setup.head_dim;
        const auto qkv = normal_values(rng, static_cast<std::size_t>(m) * width, 0.0f, 1.0f);
        auto qkv_gpu = upload(gpu, qkv, m, width);
        auto qkv_cpu = upload(cpu, qkv, m, width);
        auto out_gpu = poisoned(gpu, m, out_width);
        auto out_cpu = poisoned(cpu, m, out_width);
        gpu.attention(qkv_gpu.view, batch, *kv_gpu, layer, params_gpu.params, out_gpu.view);
        cpu.attention(qkv_cpu.view, batch, *kv_cpu, layer, params_cpu.params, out_cpu.view);
        expect_close(download(gpu, qkv_gpu.view), download(cpu, qkv_cpu.view), 1e-5,
                     what + " (q and k after normalising and rotating)");
        expect_close(download(gpu, out_gpu.view), download(cpu, out_cpu.view), tolerance, what);
    }
};

// Block ids in random order, so that a kernel ignoring the tables would read the wrong tokens.
std::vector<int> shuffled_blocks(std::mt19937& rng, int blocks) {
    std::vector<int> pool(blocks);
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), rng);
    return pool;
}

TEST_F(CudaOps, PagedAttentionMatchesCpuForPrefillDecodeAndCopiedBlocks) {
    struct Heads {
        int n_head, head_dim;
    };
    for (KvFormat format : {KvFormat::kF32, KvFormat::kF16})
        for (Heads heads : {Heads{3, 16}, Heads{2, 64}, Heads{1, 80}, Heads{2, 256}}) {
            const int block_tokens = 4, blocks = 40, layers = 2;
            const AttentionSetup gpt2{heads.n_head, heads.n_head, heads.head_dim};
            AttentionHarness h(*cuda, *cpu, rng, layers, blocks, block_tokens, gpt2, format);
            EXPECT_EQ(h.kv_gpu->bytes(), static_cast<std::size_t>(layers) * 2 * blocks *
                                             block_tokens * heads.n_head * heads.head_dim *
                                             element_bytes(format));
            const std::vector<int> pool = shuffled_blocks(rng, blocks);
            std::vector<Sequence> s(3);
            s[0].table.assign(pool.begin(), pool.begin() + 7);        // A: 28 tokens
            s[1].table.assign(pool.begin() + 7, pool.begin() + 15);   // B: 32 tokens
            s[2].table.assign(pool.begin() + 15, pool.begin() + 16);  // C: 4 tokens
            const std::string label = fmt::format("{} heads of {}, {} cache", heads.n_head,
                                                  heads.head_dim, to_string(format));

            for (int layer = 0; layer < layers; ++layer) {
                std::vector<std::pair<int, int>> prefill;  // A 0..22, B 0..6
                for (int p = 0; p <= 22; ++p) prefill.emplace_back(0, p);
                for (int p = 0; p <= 6; ++p) prefill.emplace_back(1, p);
                h.step(rng, s, prefill, layer, label + ", prefill");

                std::vector<std::pair<int, int>> mixed = {{0, 23}};  // A decodes, B and C prefill
                for (int p = 7; p <= 30; ++p) mixed.emplace_back(1, p);
                for (int p = 0; p <= 2; ++p) mixed.emplace_back(2, p);
                h.step(rng, s, mixed, layer, label + ", mixed prefill and decode");
            }

            // D shares A's first five blocks and copies its sixth (tokens 20..23), as the engine
            // does for a second sample; both then decode position 24 into their own seventh block.
            Sequence d;
            d.table.assign(s[0].table.begin(), s[0].table.begin() + 5);
            const int copy = pool[16];
            h.kv_gpu->copy_block(s[0].table[5], copy);
            h.kv_cpu->copy_block(s[0].table[5], copy);
            d.table.push_back(copy);
            d.table.push_back(pool[17]);
            s.push_back(d);
            for (int layer = 0; layer < layers; ++layer)
                h.step(rng, s, {{0, 24}, {3, 24}}, layer, label + ", decode after copy_block");
        }
}

// The Llama family's attention: grouped-query and multi-query heads, head_dim unrelated to the
// residual width, per-head q/k RMSNorm, full and partial rotary embeddings with another theta and
// an attention factor, sliding windows narrower and wider than a block, through f32 and f16
// caches: a long prefill, a batch mixing decode and prefill chunks, then decode steps past the
// windows.
TEST_F(CudaOps, LlamaFamilyAttentionMatchesCpu) {
    const AttentionSetup setups[] = {
        {.n_head = 4, .n_kv_head = 2, .head_dim = 16, .rotary_dim = 16},  // Llama, GQA
        {.n_head = 8, .n_kv_head = 1, .head_dim = 128, .rotary_dim = 128, .rope_theta = 1e6f},
        {.n_head = 4,
         .n_kv_head = 2,
         .head_dim = 32,
         .qk_norm = true,
         .rotary_dim = 32,
         .rope_theta = 1e6f},  // Qwen3
        {.n_head = 6,
         .n_kv_head = 3,
         .head_dim = 40,
         .window = 7,
         .rotary_dim = 20,
         .attention_factor = 1.2f},  // partial rotary, yarn's factor
        {.n_head = 2, .n_kv_head = 2, .head_dim = 24, .window = 1, .qk_norm = true},
        {.n_head = 14,
         .n_kv_head = 2,
         .head_dim = 64,
         .window = 32,
         .rotary_dim = 64,
         .rope_theta = 1e6f},  // Qwen2.5-0.5B's heads, with Mistral's kind of window
        {.n_head = 2, .n_kv_head = 1, .head_dim = 256, .window = 100, .rotary_dim = 256},
    };
    const int block_tokens = 16, blocks = 64, layers = 2;
    for (KvFormat format : {KvFormat::kF32, KvFormat::kF16})
        for (const AttentionSetup& setup : setups) {
            const std::string label =
                setup.describe() + ", " + std::string(to_string(format)) + " cache";
            SCOPED_TRACE(label);
            AttentionHarness h(*cuda, *cpu, rng, layers, blocks, block_tokens, setup, format);
            EXPECT_EQ(h.kv_gpu->bytes(), static_cast<std::size_t>(layers) * 2 * blocks *
                                             block_tokens * setup.n_kv_head * setup.head_dim *
                                             element_bytes(format));
            const std::vector<int> pool = shuffled_blocks(rng, blocks);
            std::vector<Sequence> s(3);
            s[0].table.assign(pool.begin(), pool.begin() + 12);       // A: 192 tokens
            s[1].table.assign(pool.begin() + 12, pool.begin() + 16);  // B: 64 tokens
            s[2].table.assign(pool.begin() + 16, pool.begin() + 17);  // C: 16 tokens
            const int layer = 1;

            std::vector<std::pair<int, int>> prefill;  // A 0..149, B 0..8
            for (int p = 0; p < 150; ++p) prefill.emplace_back(0, p);
            for (int p = 0; p <= 8; ++p) prefill.emplace_back(1, p);
            h.step(rng, s, prefill, layer, "prefill");

            std::vector<std::pair<int, int>> mixed = {{0, 150}};  // A decodes, B and C prefill
            for (int p = 9; p <= 40; ++p) mixed.emplace_back(1, p);
            for (int p = 0; p <= 5; ++p) mixed.emplace_back(2, p);
            h.step(rng, s, mixed, layer, "mixed prefill and decode");

            for (int i = 0; i < 6; ++i)
                h.step(rng, s, {{0, 151 + i}, {1, 41 + i}, {2, 6 + i}}, layer,
                       fmt::format("decode step {}", i));
        }
}

TEST_F(CudaOps, ErrorsNameTheProblem) {
    HostTensor table({4, 8}, std::vector<float>(32, 0.5f), DType::kF32);
    auto t = cuda->upload_matrix(table.view, MatrixLayout::kOutIn, WeightFormat::kAuto);
    auto out = poisoned(*cuda, 1, 8);
    const std::vector<std::int32_t> bad_id = {4};
    try {
        cuda->embedding(*t, bad_id, out.view);
        ADD_FAILURE() << "an id outside the table was accepted";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(error.what()).find("id 4"), std::string::npos) << error.what();
    }

    try {
        cuda->allocate(std::size_t{1} << 42);  // 16 TiB
        ADD_FAILURE() << "a 16 TiB allocation succeeded";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kResourceExhausted);
        EXPECT_NE(std::string(error.what()).find("cannot allocate"), std::string::npos)
            << error.what();
    }

    auto kv = cuda->allocate_kv(1, 2, 4, 1024);
    auto qkv = poisoned(*cuda, 1, 3 * 1024);
    auto attn = poisoned(*cuda, 1, 1024);
    const std::vector<int> positions = {0}, sequences = {0}, table_ids = {0};
    const std::vector<std::span<const int>> tables = {table_ids};
    try {
        cuda->attention(qkv.view, {positions, sequences, tables, 4}, *kv, 0,
                        {.n_head = 2, .n_kv_head = 2, .head_dim = 512, .scale = 1.0f, .rotary = {}},
                        attn.view);
        ADD_FAILURE() << "a head dimension of 512 was accepted";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kUnsupported);
        EXPECT_NE(std::string(error.what()).find("512"), std::string::npos) << error.what();
    }

    // None of these failures leaves the device unusable.
    std::vector<std::int32_t> good_id = {3};
    cuda->embedding(*t, good_id, out.view);
    expect_identical(download(*cuda, out.view), std::vector<float>(8, 0.5f), "after errors");
}

}  // namespace
}  // namespace llmserve::testing
