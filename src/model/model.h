// A decoder-only causal LM over a Backend (GPT-2, Llama, Mistral, Qwen2, Qwen3: one forward pass
// parameterised by the ModelConfig spec its family's reader derives from config.json): weights
// loaded once from a Hugging Face model directory, then forward(batch) for any mix of sequences,
// prefill chunks and decode tokens in one pass.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "io/weight_store.h"
#include "model/config.h"

namespace llmserve::model {

struct LoadOptions {
    std::shared_ptr<backend::Backend> backend;  // required
    backend::WeightFormat weight_format = backend::WeightFormat::kAuto;
};

// One forward pass: rows are tokens; each row belongs to a sequence whose KV blocks are listed in
// its block table. Rows of one sequence are consecutive positions; earlier positions must already
// be in the cache.
struct Batch {
    std::vector<std::int32_t> tokens;  // [rows]
    std::vector<int> positions;        // [rows]
    std::vector<int> row_sequence;     // [rows] index into block_tables
    std::vector<std::span<const int>> block_tables;
    std::vector<int> logits_rows;  // rows whose logits the caller wants, in output order
    std::size_t rows() const { return tokens.size(); }
};

// Scratch activations for batches of up to `max_rows` rows; owned by the caller (the engine),
// reused every step. Buffers are shared between values whose lifetimes do not overlap, so a row
// costs n_embd + max(n_embd, H D) + max((H + 2 KV) D, MLP width) floats, plus n_inner for a gated
// MLP (GPT-2: 2 * n_embd + max(3 * n_embd, n_inner)).
class Workspace {
  public:
    Workspace(backend::Backend& backend, const ModelConfig& config, int max_rows,
              int max_logits_rows);
    int max_rows() const { return max_rows_; }
    int max_logits_rows() const { return max_logits_rows_; }

  private:
    friend class Model;
    int max_rows_, max_logits_rows_;
    // x_: the residual stream (projections add to it in place). normed_: the position embeddings,
    // a norm's output, then attention's output, then the final norm of the rows whose logits are
    // wanted. wide_: qkv, later the MLP's hidden layer (gate | up when gated). gated_: the gated
    // MLP's activation(gate) * up.
    std::unique_ptr<backend::DeviceBuffer> x_, normed_, wide_, gated_, logits_;
};

class Model {
  public:
    // The one loader entry point: reads config.json (its model_type picks the family's reader and
    // tensor-name table), generation_config.json and the weights of `dir`, validating every
    // tensor's presence and shape. Errors name the directory, file, field and tensor.
    static std::shared_ptr<const Model> load(const std::filesystem::path& dir,
                                             const LoadOptions& options);
    // Builds the model from weights already opened (e.g. synthetic ones for benchmarks); `name`
    // labels it.
    static std::shared_ptr<const Model> from_weights(ModelConfig config,
                                                     GenerationDefaults defaults,
                                                     io::WeightStore weights, std::string name,
                                                     const LoadOptions& options);

    const ModelConfig& config() const { return config_; }
    const GenerationDefaults& generation_defaults() const { return generation_defaults_; }
    const std::string& name() const { return name_; }
    const std::filesystem::path& directory() const { return directory_; }
    std::string device_name() const { return backend_->name(); }
    backend::Backend& backend() const { return *backend_; }
    std::string dtype() const;         // compute dtype of the weights, e.g. "f32"
    std::string stored_dtype() const;  // dtype in the checkpoint, e.g. "f16"
    std::size_t weight_bytes() const;  // checkpoint bytes of the parameters used
    std::size_t resident_weight_bytes()
        const;  // extra memory the backend holds for weights (conversions)
    std::size_t parameter_count() const;
    // What the checkpoint holds, per stored dtype (a GGUF file's mix, e.g. q4_k and q6_k), and
    // how many of the matrices the backend computes with, per weight format.
    struct StoredShare {
        std::size_t tensors = 0;
        std::size_t parameters = 0;
    };
    const std::map<std::string, StoredShare>& stored_dtypes() const { return stored_dtypes_; }
    std::map<std::string, std::size_t> compute_formats() const;
    // For logs: stored_dtype() and dtype(), or for a mix, tensors (matrices) per dtype
    // ("f32 x121, q4_k x12, q5_0 x132").
    std::string stored_summary() const;
    std::string compute_summary() const;

    // Runs `batch`, writing the logits of batch.logits_rows into `logits` ([logits_rows, vocab],
    // host memory). Throws kInvalidArgument for a token id outside the vocabulary or a position
    // outside the context.
    void forward(const Batch& batch, backend::KvStorage& kv, Workspace& workspace,
                 std::span<float> logits) const;

  private:
    void issue_forward(const Batch& batch, backend::KvStorage& kv, Workspace& workspace,
                       std::span<float> logits) const;
    struct Norm {
        std::unique_ptr<backend::DeviceBuffer> weight, bias;  // bias: LayerNorm only
    };
    struct Layer {
        Norm attn_norm, mlp_norm;
        std::unique_ptr<backend::Weight> qkv, o_proj, up, down;  // up: fc, or gate | up
        std::unique_ptr<backend::DeviceBuffer> qkv_bias, o_bias, up_bias, down_bias;  // or null
        std::unique_ptr<backend::DeviceBuffer> q_norm, k_norm;                        // or null
    };
    Model() = default;
    // Every matrix the model holds (embeddings, head, per layer qkv / o / up / down).
    std::vector<const backend::Weight*> matrices() const;
    void norm(const Norm& norm, backend::MatrixView x, backend::MatrixView y) const;
    backend::AttentionParams attention_params(int layer) const;

    ModelConfig config_;
    GenerationDefaults generation_defaults_;
    std::string name_;
    std::filesystem::path directory_;
    std::shared_ptr<backend::Backend> backend_;
    io::WeightStore weights_{
        std::filesystem::path{}};  // keeps the mapped files alive for aliased weights
    std::unique_ptr<backend::Weight> wte_, wpe_, lm_head_;  // wpe_: learned positions only
    Norm final_norm_;
    std::unique_ptr<backend::DeviceBuffer> inv_freq_;  // rotary positions only
    float rotary_attention_factor_ = 1.0f;
    std::vector<Layer> layers_;
    backend::Activation activation_ = backend::Activation::kGeluNew;
    DType stored_dtype_ = DType::kF32;
    std::size_t weight_bytes_ = 0;
    std::size_t parameter_count_ = 0;
    std::map<std::string, StoredShare> stored_dtypes_;
};

}  // namespace llmserve::model
