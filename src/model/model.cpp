#include "model/gpt2.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "io/checkpoint.h"

namespace llmserve::model {
namespace {

backend::Activation backend_activation(Activation activation) {
    switch (activation) {
        case Activation::kGeluNew:
        case Activation::kGeluPytorchTanh:
            return backend::Activation::kGeluNew;  // same tanh formula
        case Activation::kGelu:
            return backend::Activation::kGelu;
        case Activation::kGeluFast:
            return backend::Activation::kGeluFast;
        case Activation::kRelu:
            return backend::Activation::kRelu;
        case Activation::kSilu:
            return backend::Activation::kSilu;
    }
    return backend::Activation::kGeluNew;
}

backend::MatrixView view(backend::DeviceBuffer& buffer, int rows, int cols) {
    return {buffer.data(), rows, cols};
}

}  // namespace

Workspace::Workspace(backend::Backend& backend, const ModelConfig& config, int max_rows,
                     int max_logits_rows)
    : max_rows_(max_rows), max_logits_rows_(max_logits_rows) {
    const auto rows = static_cast<std::size_t>(max_rows);
    x_ = backend.allocate(rows * config.n_embd);
    normed_ = backend.allocate(rows * config.n_embd);
    wide_ = backend.allocate(rows * std::max(3 * config.n_embd, config.n_inner));
    logits_ = backend.allocate(static_cast<std::size_t>(max_logits_rows) * config.vocab_size);
}

std::shared_ptr<const Gpt2Model> Gpt2Model::load(const std::filesystem::path& dir,
                                                 const LoadOptions& options) {
    ModelConfig config = ModelConfig::load(dir / "config.json");
    GenerationDefaults defaults =
        GenerationDefaults::load_if_present(dir / "generation_config.json");
    const std::string name =
        dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string();
    return from_weights(std::move(config), std::move(defaults), io::open_checkpoint_directory(dir),
                        name, options);
}

std::shared_ptr<const Gpt2Model> Gpt2Model::from_weights(ModelConfig config,
                                                         GenerationDefaults defaults,
                                                         io::WeightStore weights, std::string name,
                                                         const LoadOptions& options) {
    if (!options.backend) fail(ErrorCode::kInternal, "Gpt2Model: no backend given");
    std::shared_ptr<Gpt2Model> model(new Gpt2Model());
    model->directory_ = weights.directory();
    model->name_ = std::move(name);
    model->config_ = std::move(config);
    model->generation_defaults_ = std::move(defaults);
    model->backend_ = options.backend;
    model->weights_ = std::move(weights);
    model->activation_ = backend_activation(model->config_.activation);

    const ModelConfig& c = model->config_;
    const io::WeightStore& store = model->weights_;
    backend::Backend& be = *model->backend_;
    const std::int64_t C = c.n_embd, V = c.vocab_size, P = c.n_positions, I = c.n_inner;

    auto tensor = [&](const std::string& name,
                      std::initializer_list<std::int64_t> shape) -> const io::TensorView& {
        const std::vector<std::int64_t> dims(shape);
        const io::TensorView& t = store.require(name, dims);
        model->weight_bytes_ += t.data.size();
        model->parameter_count_ += static_cast<std::size_t>(t.numel());
        return t;
    };
    auto matrix = [&](const std::string& name, std::initializer_list<std::int64_t> shape,
                      backend::MatrixLayout layout) {
        return be.upload_matrix(tensor(name, shape), layout, options.weight_format);
    };
    auto vector = [&](const std::string& name, std::int64_t size) {
        return be.upload_vector(tensor(name, {size}));
    };

    const io::TensorView& wte = tensor("wte.weight", {V, C});
    model->stored_dtype_ = wte.dtype;
    model->wte_ = be.upload_matrix(wte, backend::MatrixLayout::kOutIn, options.weight_format);
    model->wpe_ = matrix("wpe.weight", {P, C}, backend::MatrixLayout::kOutIn);
    for (int i = 0; i < c.n_layer; ++i) {
        const std::string p = "h." + std::to_string(i) + ".";
        Layer layer;
        layer.ln_1_weight = vector(p + "ln_1.weight", C);
        layer.ln_1_bias = vector(p + "ln_1.bias", C);
        layer.attn_qkv =
            matrix(p + "attn.c_attn.weight", {C, 3 * C}, backend::MatrixLayout::kInOut);
        layer.attn_qkv_bias = vector(p + "attn.c_attn.bias", 3 * C);
        layer.attn_proj = matrix(p + "attn.c_proj.weight", {C, C}, backend::MatrixLayout::kInOut);
        layer.attn_proj_bias = vector(p + "attn.c_proj.bias", C);
        layer.ln_2_weight = vector(p + "ln_2.weight", C);
        layer.ln_2_bias = vector(p + "ln_2.bias", C);
        layer.mlp_fc = matrix(p + "mlp.c_fc.weight", {C, I}, backend::MatrixLayout::kInOut);
        layer.mlp_fc_bias = vector(p + "mlp.c_fc.bias", I);
        layer.mlp_proj = matrix(p + "mlp.c_proj.weight", {I, C}, backend::MatrixLayout::kInOut);
        layer.mlp_proj_bias = vector(p + "mlp.c_proj.bias", C);
        model->layers_.push_back(std::move(layer));
    }
    model->ln_f_weight_ = vector("ln_f.weight", C);
    model->ln_f_bias_ = vector("ln_f.bias", C);
    // transformers ties lm_head to wte whenever tie_word_embeddings is set, whatever the file
    // holds.
    if (!c.tie_word_embeddings)
        model->lm_head_ = matrix("lm_head.weight", {V, C}, backend::MatrixLayout::kOutIn);
    return model;
}

std::string Gpt2Model::dtype() const {
    return std::string(backend::to_string(wte_->format()));
}
std::string Gpt2Model::stored_dtype() const {
    return std::string(to_string(stored_dtype_));
}
std::size_t Gpt2Model::weight_bytes() const {
    return weight_bytes_;
}
std::size_t Gpt2Model::parameter_count() const {
    return parameter_count_;
}

std::size_t Gpt2Model::resident_weight_bytes() const {
    std::size_t total = wte_->resident_bytes() + wpe_->resident_bytes() +
                        (lm_head_ ? lm_head_->resident_bytes() : 0);
    for (const Layer& l : layers_)
        total += l.attn_qkv->resident_bytes() + l.attn_proj->resident_bytes() +
                 l.mlp_fc->resident_bytes() + l.mlp_proj->resident_bytes();
    return total;
}

// x = wte[tokens] + wpe[positions]; per layer: x += attn(ln_1(x)); x += mlp(ln_2(x)); logits =
// ln_f(x) · wteᵀ.
void Gpt2Model::forward(const Batch& batch, backend::KvStorage& kv, Workspace& ws,
                        std::span<float> logits) const {
    const ModelConfig& c = config_;
    const int rows = static_cast<int>(batch.rows());
    const int out_rows = static_cast<int>(batch.logits_rows.size());
    if (rows == 0) return;
    if (rows > ws.max_rows() || out_rows > std::min(rows, ws.max_logits_rows()))
        fail(ErrorCode::kInternal,
             "batch of {} rows ({} with logits) exceeds the workspace ({} / {})", rows, out_rows,
             ws.max_rows(), ws.max_logits_rows());
    if (batch.positions.size() != batch.tokens.size() ||
        batch.row_sequence.size() != batch.tokens.size())
        fail(ErrorCode::kInternal, "batch arrays disagree in length");
    if (logits.size() != static_cast<std::size_t>(out_rows) * c.vocab_size)
        fail(ErrorCode::kInternal, "logits buffer holds {} floats, expected {}", logits.size(),
             static_cast<std::size_t>(out_rows) * c.vocab_size);
    for (int r = 0; r < rows; ++r) {
        if (batch.tokens[r] < 0 || batch.tokens[r] >= c.vocab_size)
            fail_param("prompt", "token id {} is outside the vocabulary [0, {})", batch.tokens[r],
                       c.vocab_size);
        if (batch.positions[r] < 0 || batch.positions[r] >= c.n_positions)
            fail_param("prompt", "position {} is outside the model's context of {} tokens",
                       batch.positions[r], c.n_positions);
    }

    backend::Backend& be = *backend_;
    be.run_step({rows, out_rows}, [&] { issue_forward(batch, kv, ws, logits); });
}

// The backend calls of one forward pass (validated by forward()).
void Gpt2Model::issue_forward(const Batch& batch, backend::KvStorage& kv, Workspace& ws,
                              std::span<float> logits) const {
    const ModelConfig& c = config_;
    const int rows = static_cast<int>(batch.rows());
    const int out_rows = static_cast<int>(batch.logits_rows.size());
    backend::Backend& be = *backend_;
    const int C = c.n_embd;
    auto x = view(*ws.x_, rows, C);
    auto normed = view(*ws.normed_, rows, C);
    auto attn = normed;  // the layer norm's output is dead once qkv is computed
    auto qkv = view(*ws.wide_, rows, 3 * C);
    auto mlp = view(*ws.wide_, rows, c.n_inner);  // qkv is dead once attention has run

    be.embedding(*wte_, batch.tokens, x);
    be.embedding(*wpe_, batch.positions, normed);
    be.add(x, normed);

    const backend::AttentionBatch attention_batch{batch.positions, batch.row_sequence,
                                                  batch.block_tables, kv.block_tokens()};
    for (int i = 0; i < c.n_layer; ++i) {
        const Layer& layer = layers_[i];
        backend::AttentionParams params{c.n_head, 1.0f};
        if (c.scale_attn_weights) params.scale /= std::sqrt(static_cast<float>(c.head_dim()));
        if (c.scale_attn_by_inverse_layer_idx) params.scale /= static_cast<float>(i + 1);

        be.layer_norm(x, *layer.ln_1_weight, *layer.ln_1_bias, c.layer_norm_epsilon, normed);
        be.linear(normed, *layer.attn_qkv, layer.attn_qkv_bias.get(), qkv);
        be.attention(qkv, attention_batch, kv, i, params, attn);
        be.linear(attn, *layer.attn_proj, {.bias = layer.attn_proj_bias.get(), .accumulate = true},
                  x);

        be.layer_norm(x, *layer.ln_2_weight, *layer.ln_2_bias, c.layer_norm_epsilon, normed);
        be.linear(normed, *layer.mlp_fc,
                  {.bias = layer.mlp_fc_bias.get(), .activation = activation_}, mlp);
        be.linear(mlp, *layer.mlp_proj, {.bias = layer.mlp_proj_bias.get(), .accumulate = true}, x);
    }
    if (out_rows == 0) return;
    auto selected = view(*ws.normed_, out_rows, C);  // logits rows are a subset of the rows
    be.gather_rows(x, batch.logits_rows, selected);
    be.layer_norm(selected, *ln_f_weight_, *ln_f_bias_, c.layer_norm_epsilon, selected);
    auto staging = view(*ws.logits_, out_rows, c.vocab_size);
    be.linear_to_host(selected, lm_head_ ? *lm_head_ : *wte_, staging, logits.data());
}

}  // namespace llmserve::model
