// The ops the Llama family adds to the CPU backend, on every kernel tier, against plain double
// references written from the definitions: RMSNorm, the gated activation, and attention with
// grouped-query / multi-query heads, a head_dim unrelated to the residual width, per-head q/k
// RMSNorm, rotary embeddings (full and partial) and sliding windows, through f32 and f16 caches,
// whether a sequence arrives as one prefill or one row at a time.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "common/dtype.h"
#include "common/error.h"
#include "tests/backend/kernel_test_support.h"

namespace llmserve::backend::cpu {
namespace {

using namespace testing;

std::unique_ptr<DeviceBuffer> buffer_of(Backend& backend, const std::vector<float>& values) {
    auto buffer = backend.allocate(values.size());
    std::memcpy(buffer->data(), values.data(), values.size() * sizeof(float));
    return buffer;
}

TEST(DecoderOps, RmsNormMatchesItsDefinition) {
    const int rows = 5, cols = 67;
    const auto x = random_floats(rows * cols, -3.0f, 3.0f, 1);
    const auto gamma = random_floats(cols, 0.5f, 1.5f, 2);
    for (Isa isa : tiers()) {
        SCOPED_TRACE(tier_name(isa));
        auto backend = make_cpu_backend(2, isa);
        auto in = buffer_of(*backend, x);
        auto weight = buffer_of(*backend, gamma);
        backend->rms_norm({in->data(), rows, cols}, *weight, 1e-5f, {in->data(), rows, cols});
        for (int r = 0; r < rows; ++r) {
            double squares = 0.0;
            for (int c = 0; c < cols; ++c) squares += double(x[r * cols + c]) * x[r * cols + c];
            const double inverse = 1.0 / std::sqrt(squares / cols + 1e-5);
            for (int c = 0; c < cols; ++c)
                ASSERT_NEAR(in->data()[r * cols + c], gamma[c] * x[r * cols + c] * inverse, 1e-5);
        }
    }
}

TEST(DecoderOps, GatedActivationIsActivationOfGateTimesUp) {
    const int rows = 3, width = 100;
    const auto gate_up = random_floats(rows * 2 * width, -4.0f, 4.0f, 3);
    for (Isa isa : tiers()) {
        SCOPED_TRACE(tier_name(isa));
        auto backend = make_cpu_backend(2, isa);
        auto in = buffer_of(*backend, gate_up);
        auto out = backend->allocate(rows * width);
        backend->gated_activation({in->data(), rows, 2 * width}, Activation::kSilu,
                                  {out->data(), rows, width});
        for (int r = 0; r < rows; ++r)
            for (int i = 0; i < width; ++i) {
                const double gate = gate_up[r * 2 * width + i],
                             up = gate_up[r * 2 * width + width + i];
                ASSERT_NEAR(out->data()[r * width + i], gate / (1.0 + std::exp(-gate)) * up,
                            1e-5 * (1.0 + std::abs(gate * up)));
            }
        EXPECT_THROW(backend->gated_activation({in->data(), rows, 2 * width}, Activation::kSilu,
                                               {out->data(), rows, width - 1}),
                     Error);
    }
}

struct AttentionShape {
    int heads, kv_heads, head_dim, rotary_dim, window, block_tokens;
    bool qk_norm;
};

std::string describe(const AttentionShape& s) {
    return "H " + std::to_string(s.heads) + ", KV " + std::to_string(s.kv_heads) + ", D " +
           std::to_string(s.head_dim) + ", rotary " + std::to_string(s.rotary_dim) + ", window " +
           std::to_string(s.window) + ", blocks of " + std::to_string(s.block_tokens) +
           (s.qk_norm ? ", qk norm" : "");
}

// What attention must compute for a sequence of `length` rows from position 0, in double:
// per-head RMSNorm, rotate_half RoPE (float32 angles, as the op specifies), then softmax
// attention of each query over the keys in its window, query head h on KV head h / group.
std::vector<double> reference_attention(const AttentionShape& s, std::vector<float> qkv, int length,
                                        const std::vector<float>& inv_freq,
                                        const std::vector<float>& q_norm,
                                        const std::vector<float>& k_norm, float scale) {
    const int D = s.head_dim, width = (s.heads + 2 * s.kv_heads) * D;
    std::vector<double> x(qkv.begin(), qkv.end());
    for (int r = 0; r < length; ++r)
        for (int h = 0; h < s.heads + s.kv_heads; ++h) {
            double* head = x.data() + r * width + h * D;
            if (s.qk_norm) {
                const auto& gamma = h < s.heads ? q_norm : k_norm;
                double squares = 0.0;
                for (int d = 0; d < D; ++d) squares += head[d] * head[d];
                const double inverse = 1.0 / std::sqrt(squares / D + 1e-6);
                for (int d = 0; d < D; ++d) head[d] = gamma[d] * head[d] * inverse;
            }
            const int half = s.rotary_dim / 2;
            for (int i = 0; i < half; ++i) {
                const double angle = static_cast<float>(r) * inv_freq[i];
                const double a = head[i], b = head[i + half];
                head[i] = a * std::cos(angle) - b * std::sin(angle);
                head[i + half] = b * std::cos(angle) + a * std::sin(angle);
            }
        }
    std::vector<double> out(static_cast<std::size_t>(length) * s.heads * D);
    const int group = s.heads / s.kv_heads;
    for (int r = 0; r < length; ++r)
        for (int h = 0; h < s.heads; ++h) {
            const double* q = x.data() + r * width + h * D;
            const int kv = h / group;
            const int first = s.window > 0 ? std::max(0, r - s.window + 1) : 0;
            std::vector<double> weights;
            double max_score = -1e300, sum = 0.0;
            for (int t = first; t <= r; ++t) {
                const double* k = x.data() + t * width + (s.heads + kv) * D;
                double dot = 0.0;
                for (int d = 0; d < D; ++d) dot += q[d] * k[d];
                weights.push_back(dot * scale);
                max_score = std::max(max_score, weights.back());
            }
            for (double& w : weights) sum += (w = std::exp(w - max_score));
            for (int d = 0; d < D; ++d) {
                double value = 0.0;
                for (int t = first; t <= r; ++t)
                    value += weights[t - first] / sum *
                             x[t * width + (s.heads + s.kv_heads + kv) * D + d];
                out[(static_cast<std::size_t>(r) * s.heads + h) * D + d] = value;
            }
        }
    return out;
}

TEST(DecoderOps, AttentionWithGroupedHeadsRopeNormsAndWindowsMatchesItsDefinition) {
    const AttentionShape shapes[] = {
        {4, 2, 16, 16, 0, 16, false},  // GQA, RoPE (Llama)
        {4, 1, 32, 32, 0, 6, true},    // MQA, qk norm (Qwen3), blocks not a multiple of a chunk
        {6, 3, 40, 20, 7, 16, false},  // partial rotary, sliding window, head_dim 40
        {2, 2, 24, 24, 1, 16, true},   // a window of one key
    };
    const int length = 37;
    for (const AttentionShape& s : shapes)
        for (Isa isa : tiers())
            for (KvFormat format : {KvFormat::kF32, KvFormat::kF16}) {
                SCOPED_TRACE(describe(s) + ", " + tier_name(isa) + ", KV " +
                             std::string(to_string(format)));
                auto backend = make_cpu_backend(2, isa);
                const int D = s.head_dim, width = (s.heads + 2 * s.kv_heads) * D;
                const auto qkv = random_floats(static_cast<std::size_t>(length) * width, -1.0f,
                                               1.0f, static_cast<unsigned>(D + s.window));
                std::vector<float> inv_freq(s.rotary_dim / 2);
                for (int i = 0; i < s.rotary_dim / 2; ++i)
                    inv_freq[i] =
                        static_cast<float>(1.0 / std::pow(10000.0, 2.0 * i / s.rotary_dim));
                const auto q_norm = random_floats(D, 0.5f, 1.5f, 5);
                const auto k_norm = random_floats(D, 0.5f, 1.5f, 6);
                auto inv_freq_buffer = buffer_of(*backend, inv_freq);
                auto q_norm_buffer = buffer_of(*backend, q_norm);
                auto k_norm_buffer = buffer_of(*backend, k_norm);
                const float scale = 1.0f / std::sqrt(static_cast<float>(D));
                AttentionParams params{.n_head = s.heads,
                                       .n_kv_head = s.kv_heads,
                                       .head_dim = D,
                                       .scale = scale,
                                       .window = s.window,
                                       .rotary = {inv_freq_buffer.get(), s.rotary_dim, 1.0f}};
                if (s.qk_norm) {
                    params.q_norm = q_norm_buffer.get();
                    params.k_norm = k_norm_buffer.get();
                }
                const auto expected =
                    reference_attention(s, qkv, length, inv_freq, q_norm, k_norm, scale);
                const double tolerance = format == KvFormat::kF16 ? 5e-3 : 2e-5;
                const std::vector<int> table =
                    scattered_blocks((length + s.block_tokens - 1) / s.block_tokens, 3, 9);
                const std::vector<std::span<const int>> tables = {table};
                // The whole sequence as one prefill, then as a prefill of 10 rows and single rows.
                for (int prefill : {length, 10}) {
                    SCOPED_TRACE("prefill of " + std::to_string(prefill));
                    auto kv = backend->allocate_kv(2, 20, s.block_tokens, s.kv_heads * D, format);
                    for (int first = 0; first < length; first += first == 0 ? prefill : 1) {
                        const int rows = first == 0 ? prefill : 1;
                        std::vector<float> input(qkv.begin() + first * width,
                                                 qkv.begin() + (first + rows) * width);
                        auto in = buffer_of(*backend, input);
                        auto out = backend->allocate(static_cast<std::size_t>(rows) * s.heads * D);
                        std::vector<int> positions(rows), sequence(rows, 0);
                        for (int r = 0; r < rows; ++r) positions[r] = first + r;
                        backend->attention({in->data(), rows, width},
                                           {positions, sequence, tables, s.block_tokens}, *kv, 1,
                                           params, {out->data(), rows, s.heads * D});
                        for (std::size_t i = 0; i < out->size(); ++i) {
                            const double want = expected[first * s.heads * D + i];
                            ASSERT_NEAR(out->data()[i], want, tolerance * (1.0 + std::abs(want)))
                                << "position " << first + static_cast<int>(i) / (s.heads * D);
                        }
                    }
                }
            }
}

TEST(DecoderOps, AttentionRefusesShapesThatDoNotFit) {
    auto backend = make_cpu_backend(1, Isa::kScalar);
    auto kv = backend->allocate_kv(1, 2, 16, 2 * 16);
    auto qkv = backend->allocate(8 * 16);
    auto out = backend->allocate(4 * 16);
    const std::vector<int> positions = {0}, sequence = {0}, table = {0};
    const std::vector<std::span<const int>> tables = {table};
    const AttentionBatch batch{positions, sequence, tables, 16};
    auto run = [&](AttentionParams params, int qkv_cols, int out_cols) {
        backend->attention({qkv->data(), 1, qkv_cols}, batch, *kv, 0, params,
                           {out->data(), 1, out_cols});
    };
    const AttentionParams good{.n_head = 4, .n_kv_head = 2, .head_dim = 16, .scale = 0.25f};
    EXPECT_NO_THROW(run(good, 8 * 16, 4 * 16));
    AttentionParams bad = good;
    bad.n_kv_head = 3;  // not a divisor of the heads, nor the cache's width
    EXPECT_THROW(run(bad, 8 * 16, 4 * 16), Error);
    EXPECT_THROW(run(good, 7 * 16, 4 * 16), Error);  // qkv too narrow
    auto inv_freq = backend->allocate(4);
    bad = good;
    bad.rotary = {inv_freq.get(), 18, 1.0f};  // wider than head_dim
    EXPECT_THROW(run(bad, 8 * 16, 4 * 16), Error);
    bad = good;
    bad.q_norm = inv_freq.get();  // q norm without k norm
    EXPECT_THROW(run(bad, 8 * 16, 4 * 16), Error);
}

}  // namespace
}  // namespace llmserve::backend::cpu
