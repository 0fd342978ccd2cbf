// A forward pass that fails (injected by a backend wrapper) ends the requests of that step with an
// error, is counted, and the engine goes on serving; nothing ends silently as "cancelled".
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>

#include "backend/backend.h"
#include "common/error.h"
#include "engine/engine.h"
#include "model/model.h"
#include "tests/common/test_paths.h"

namespace llmserve::engine {
namespace {

// The CPU backend, except that run_step throws while `fail_steps` is above zero.
class FaultyBackend : public backend::Backend {
  public:
    std::atomic<int> fail_steps{0};

    std::string name() const override { return inner_->name(); }
    int threads() const override { return inner_->threads(); }
    std::unique_ptr<backend::DeviceBuffer> allocate(std::size_t floats) override {
        return inner_->allocate(floats);
    }
    std::unique_ptr<backend::HostBuffer> allocate_host(std::size_t floats) override {
        return inner_->allocate_host(floats);
    }
    std::unique_ptr<backend::KvStorage> allocate_kv(int layers, int blocks, int block_tokens,
                                                    int n_embd, backend::KvFormat format) override {
        return inner_->allocate_kv(layers, blocks, block_tokens, n_embd, format);
    }
    std::unique_ptr<backend::Weight> upload_matrix(const io::TensorView& tensor,
                                                   backend::MatrixLayout layout,
                                                   backend::WeightFormat format) override {
        return inner_->upload_matrix(tensor, layout, format);
    }
    std::unique_ptr<backend::DeviceBuffer> upload_vector(const io::TensorView& tensor) override {
        return inner_->upload_vector(tensor);
    }
    void embedding(const backend::Weight& table, std::span<const std::int32_t> ids,
                   backend::MatrixView out) override {
        inner_->embedding(table, ids, out);
    }
    void linear(backend::MatrixView x, const backend::Weight& w,
                const backend::LinearEpilogue& epilogue, backend::MatrixView y) override {
        inner_->linear(x, w, epilogue, y);
    }
    void layer_norm(backend::MatrixView x, const backend::DeviceBuffer& gamma,
                    const backend::DeviceBuffer& beta, float eps, backend::MatrixView y) override {
        inner_->layer_norm(x, gamma, beta, eps, y);
    }
    void rms_norm(backend::MatrixView x, const backend::DeviceBuffer& gamma, float eps,
                  backend::MatrixView y) override {
        inner_->rms_norm(x, gamma, eps, y);
    }
    void gated_activation(backend::MatrixView gate_up, backend::Activation activation,
                          backend::MatrixView out) override {
        inner_->gated_activation(gate_up, activation, out);
    }
    void add(backend::MatrixView x, backend::MatrixView y) override { inner_->add(x, y); }
    void attention(backend::MatrixView qkv, const backend::AttentionBatch& batch,
                   backend::KvStorage& kv, int layer, const backend::AttentionParams& params,
                   backend::MatrixView out) override {
        inner_->attention(qkv, batch, kv, layer, params, out);
    }
    void gather_rows(backend::MatrixView x, std::span<const int> rows,
                     backend::MatrixView out) override {
        inner_->gather_rows(x, rows, out);
    }
    void copy_to_host(backend::MatrixView x, float* host) override {
        inner_->copy_to_host(x, host);
    }
    void linear_to_host(backend::MatrixView x, const backend::Weight& w,
                        backend::MatrixView staging, float* host) override {
        inner_->linear_to_host(x, w, staging, host);
    }
    void run_step(const backend::StepShape& shape, const std::function<void()>& issue) override {
        if (fail_steps > 0) {
            --fail_steps;
            fail(ErrorCode::kInternal, "injected forward-pass failure");
        }
        inner_->run_step(shape, issue);
    }

  private:
    std::unique_ptr<backend::Backend> inner_ = backend::make_cpu_backend(1);
};

GenerationRequest long_request() {
    GenerationRequest request;
    request.prompt = {464, 13668, 531};
    request.sampling.temperature = 0;
    request.stop.max_new_tokens = 200;
    request.stop.ignore_eos = true;
    return request;
}

TEST(EngineFailure, FailedForwardPassEndsTheStepsRequestsWithAnErrorAndServingGoesOn) {
    auto backend = std::make_shared<FaultyBackend>();
    auto model = std::shared_ptr<const model::Model>(
        model::Model::load(testing::embedded_model_dir(), {backend, backend::WeightFormat::kAuto}));
    Engine engine(model, nullptr, EngineOptions{});

    auto first = engine.submit(long_request());
    auto second = engine.submit(long_request());
    // Let both run a few steps, then break the next forward pass.
    while (engine.stats().generated_tokens_total < 6) std::this_thread::yield();
    backend->fail_steps = 1;
    for (const auto& handle : {first, second}) {
        const RequestResult result = handle->wait();
        ASSERT_EQ(result.sequences.size(), 1u);
        EXPECT_EQ(result.sequences[0].finish_reason, FinishReason::kError);
        EXPECT_EQ(result.error_code, ErrorCode::kInternal);
        EXPECT_NE(result.error.find("injected forward-pass failure"), std::string::npos)
            << result.error;
        EXPECT_LT(result.sequences[0].tokens.size(), 200u);
    }
    const EngineStats stats = engine.stats();
    EXPECT_EQ(stats.step_failures, 1u);
    EXPECT_EQ(stats.requests_failed, 2u);
    EXPECT_EQ(stats.requests_cancelled, 0u);

    // The engine keeps serving, and the KV blocks of the failed requests are free again.
    GenerationRequest after = long_request();
    after.stop.max_new_tokens = 5;
    const RequestResult result = engine.submit(after)->wait();
    EXPECT_TRUE(result.error.empty()) << result.error;
    EXPECT_EQ(result.sequences[0].finish_reason, FinishReason::kLength);
    EXPECT_EQ(result.sequences[0].tokens.size(), 5u);
    EXPECT_EQ(engine.stats().kv_blocks_free, engine.stats().kv_blocks_total);
}

}  // namespace
}  // namespace llmserve::engine
