#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "common/error.h"
#include "io/checkpoint.h"
#include "model/families.h"
#include "model/gguf_model.h"
#include "model/rope.h"

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

// The per-layer name `pattern` ("...{}...") for layer `layer`.
std::string layer_name(const std::string& pattern, int layer) {
    std::string name = pattern;
    const auto at = name.find("{}");
    if (at != std::string::npos) name.replace(at, 2, std::to_string(layer));
    return name;
}

// One tensor made of `parts` concatenated along the first dimension (the outputs of [out, in]
// matrices, or vectors), in `storage`. All parts must share a dtype and their other dimensions.
// Parts of different dtypes (a GGUF mixture's Q6_K v with Q4_K q and k, where the backend cannot
// take them as parts) are widened to f32.
io::TensorView concatenate(const std::vector<const io::TensorView*>& parts,
                           std::vector<std::byte>& storage) {
    if (parts.size() == 1) return *parts.front();
    io::TensorView joined = *parts.front();
    joined.name.clear();
    joined.shape[0] = 0;
    storage.clear();
    const bool mixed = std::any_of(parts.begin(), parts.end(), [&](const io::TensorView* part) {
        return part->dtype != joined.dtype;
    });
    if (mixed) joined.dtype = DType::kF32;
    for (const io::TensorView* part : parts) {
        joined.name += (joined.name.empty() ? "" : " | ") + part->name;
        joined.shape[0] += part->shape[0];
        if (mixed) {
            const std::size_t at = storage.size();
            const auto count = static_cast<std::size_t>(part->numel());
            storage.resize(at + count * sizeof(float));
            std::vector<float> values(count);
            convert_to_f32(part->dtype, part->data.data(), count, values.data());
            std::memcpy(storage.data() + at, values.data(), count * sizeof(float));
        } else {
            storage.insert(storage.end(), part->data.begin(), part->data.end());
        }
    }
    joined.data = storage;
    return joined;
}

}  // namespace

Workspace::Workspace(backend::Backend& backend, const ModelConfig& config, int max_rows,
                     int max_logits_rows)
    : max_rows_(max_rows), max_logits_rows_(max_logits_rows) {
    const auto rows = static_cast<std::size_t>(max_rows);
    const int mlp_width = config.gated_mlp ? 2 * config.n_inner : config.n_inner;
    const int qkv_width = config.q_dim() + 2 * config.kv_dim();
    x_ = backend.allocate(rows * config.n_embd);
    normed_ = backend.allocate(rows * std::max(config.n_embd, config.q_dim()));
    wide_ = backend.allocate(rows * std::max(qkv_width, mlp_width));
    if (config.gated_mlp) gated_ = backend.allocate(rows * config.n_inner);
    logits_ = backend.allocate(static_cast<std::size_t>(max_logits_rows) * config.vocab_size);
}

std::shared_ptr<const Model> Model::load(const std::filesystem::path& dir,
                                         const LoadOptions& options) {
    if (std::filesystem::is_regular_file(dir) && io::is_gguf_file(dir)) {
        io::GgufMapped mapped = io::open_gguf(dir);
        ModelConfig config = gguf_model_config(mapped.gguf);
        GenerationDefaults defaults = gguf_generation_defaults(config);
        std::string name = dir.stem().string();
        io::WeightStore weights = gguf_weights(std::move(mapped), config);
        return from_weights(std::move(config), std::move(defaults), std::move(weights),
                            std::move(name), options);
    }
    ModelConfig config = ModelConfig::load(dir / "config.json");
    GenerationDefaults defaults =
        GenerationDefaults::load_if_present(dir / "generation_config.json");
    const std::string name =
        dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string();
    return from_weights(std::move(config), std::move(defaults), io::open_checkpoint_directory(dir),
                        name, options);
}

std::shared_ptr<const Model> Model::from_weights(ModelConfig config, GenerationDefaults defaults,
                                                 io::WeightStore weights, std::string name,
                                                 const LoadOptions& options) {
    if (!options.backend) fail(ErrorCode::kInternal, "Model: no backend given");
    std::shared_ptr<Model> model(new Model());
    model->directory_ = weights.directory();
    model->name_ = std::move(name);
    model->config_ = std::move(config);
    model->generation_defaults_ = std::move(defaults);
    model->backend_ = options.backend;
    model->weights_ = std::move(weights);
    model->activation_ = backend_activation(model->config_.activation);

    const ModelConfig& c = model->config_;
    const TensorNames& names = tensor_names(c);
    const io::WeightStore& store = model->weights_;
    backend::Backend& be = *model->backend_;
    const std::int64_t C = c.n_embd, V = c.vocab_size, P = c.n_positions, I = c.n_inner;
    const std::int64_t Q = c.q_dim(), KV = c.kv_dim(), D = c.head_dim;
    if (static_cast<int>(c.layer_windows.size()) != c.n_layer)
        fail(ErrorCode::kInternal, "Model: {} layer windows for {} layers", c.layer_windows.size(),
             c.n_layer);

    auto tensor = [&](const std::string& name,
                      std::vector<std::int64_t> shape) -> const io::TensorView& {
        const io::TensorView& t = store.require(name, shape);
        model->weight_bytes_ += t.data.size();
        model->parameter_count_ += static_cast<std::size_t>(t.numel());
        StoredShare& share = model->stored_dtypes_[std::string(to_string(t.dtype))];
        ++share.tensors;
        share.parameters += static_cast<std::size_t>(t.numel());
        return t;
    };
    std::vector<std::byte> joined;  // concatenation scratch; backends copy what they upload
    // A product of `parts` (one name per part, with its output width), concatenated along the
    // outputs: [in, out] for Conv1D checkpoints (GPT-2's single fused parts), [out, in] otherwise.
    auto matrix = [&](const std::vector<std::string>& parts, std::vector<std::int64_t> outs,
                      std::int64_t in) {
        if (parts.size() == 1 && outs.size() > 1)
            outs = {std::accumulate(outs.begin(), outs.end(), std::int64_t{0})};
        std::vector<const io::TensorView*> views;
        for (std::size_t i = 0; i < parts.size(); ++i)
            views.push_back(&tensor(parts[i], names.layout == backend::MatrixLayout::kInOut
                                                  ? std::vector<std::int64_t>{in, outs[i]}
                                                  : std::vector<std::int64_t>{outs[i], in}));
        // Parts of different block types stay blocks where the backend can pack them apart.
        const bool mixed = std::any_of(views.begin(), views.end(), [&](const io::TensorView* v) {
            return v->dtype != views.front()->dtype;
        });
        if (mixed && names.layout == backend::MatrixLayout::kOutIn)
            if (auto weight = be.upload_matrix_parts(views, options.weight_format)) return weight;
        return be.upload_matrix(concatenate(views, joined), names.layout, options.weight_format);
    };
    auto bias = [&](const std::vector<std::string>& parts, std::vector<std::int64_t> outs) {
        if (parts.size() == 1 && outs.size() > 1)
            outs = {std::accumulate(outs.begin(), outs.end(), std::int64_t{0})};
        std::vector<const io::TensorView*> views;
        for (std::size_t i = 0; i < parts.size(); ++i)
            views.push_back(&tensor(TensorNames::bias_of(parts[i]), {outs[i]}));
        return be.upload_vector(concatenate(views, joined));
    };
    auto vector = [&](const std::string& name, std::int64_t size) {
        return be.upload_vector(tensor(name, {size}));
    };
    auto norm = [&](const std::string& weight_name) {
        Norm n;
        n.weight = vector(weight_name, C);
        if (c.norm == NormKind::kLayerNorm) n.bias = vector(TensorNames::bias_of(weight_name), C);
        return n;
    };
    auto for_layer = [](const std::vector<std::string>& patterns, int layer) {
        std::vector<std::string> out;
        for (const std::string& pattern : patterns) out.push_back(layer_name(pattern, layer));
        return out;
    };

    const io::TensorView& wte = tensor(names.embed, {V, C});
    model->stored_dtype_ = wte.dtype;
    model->wte_ = be.upload_matrix(wte, backend::MatrixLayout::kOutIn, options.weight_format);
    if (!c.rope) {
        model->wpe_ = be.upload_matrix(tensor(names.position_embed, {P, C}),
                                       backend::MatrixLayout::kOutIn, options.weight_format);
    } else {
        const RotaryTable table = rotary_table(*c.rope);
        // Uploaded like a weight: a DeviceBuffer's data() is device memory on the GPU.
        io::TensorView inv_freq;
        inv_freq.name = "rotary inverse frequencies";
        inv_freq.file = "config.json";
        inv_freq.shape = {static_cast<std::int64_t>(table.inv_freq.size())};
        inv_freq.data = std::as_bytes(std::span(table.inv_freq));
        model->inv_freq_ = be.upload_vector(inv_freq);
        model->rotary_attention_factor_ = table.attention_factor;
    }
    const std::vector<std::int64_t> qkv_outs = {Q, KV, KV};
    const std::vector<std::int64_t> up_outs =
        c.gated_mlp ? std::vector<std::int64_t>{I, I} : std::vector<std::int64_t>{I};
    for (int i = 0; i < c.n_layer; ++i) {
        Layer layer;
        const auto qkv = for_layer(names.qkv, i), up = for_layer(names.up, i);
        const auto o_proj = for_layer({names.o_proj}, i), down = for_layer({names.down}, i);
        layer.attn_norm = norm(layer_name(names.attn_norm, i));
        layer.qkv = matrix(qkv, qkv_outs, C);
        if (c.qkv_bias) layer.qkv_bias = bias(qkv, qkv_outs);
        if (c.qk_norm) {
            layer.q_norm = vector(layer_name(names.q_norm, i), D);
            layer.k_norm = vector(layer_name(names.k_norm, i), D);
        }
        layer.o_proj = matrix(o_proj, {C}, Q);
        if (c.o_bias) layer.o_bias = bias(o_proj, {C});
        layer.mlp_norm = norm(layer_name(names.mlp_norm, i));
        layer.up = matrix(up, up_outs, C);
        if (c.mlp_bias) layer.up_bias = bias(up, up_outs);
        layer.down = matrix(down, {C}, I);
        if (c.mlp_bias) layer.down_bias = bias(down, {C});
        model->layers_.push_back(std::move(layer));
    }
    model->final_norm_ = norm(names.final_norm);
    // transformers ties lm_head to the embeddings whenever tie_word_embeddings is set, whatever
    // the file holds.
    if (!c.tie_word_embeddings)
        model->lm_head_ = be.upload_matrix(tensor(names.lm_head, {V, C}),
                                           backend::MatrixLayout::kOutIn, options.weight_format);
    return model;
}

std::string Model::dtype() const {
    return std::string(backend::to_string(wte_->format()));
}
std::string Model::stored_dtype() const {
    return std::string(to_string(stored_dtype_));
}
std::size_t Model::weight_bytes() const {
    return weight_bytes_;
}
std::size_t Model::parameter_count() const {
    return parameter_count_;
}

std::vector<const backend::Weight*> Model::matrices() const {
    std::vector<const backend::Weight*> out;
    for (const auto* w : {wte_.get(), wpe_.get(), lm_head_.get()})
        if (w != nullptr) out.push_back(w);
    for (const Layer& l : layers_)
        for (const auto* w : {l.qkv.get(), l.o_proj.get(), l.up.get(), l.down.get()})
            out.push_back(w);
    return out;
}

std::map<std::string, std::size_t> Model::compute_formats() const {
    std::map<std::string, std::size_t> counts;
    for (const backend::Weight* w : matrices())
        ++counts[std::string(backend::to_string(w->format()))];
    return counts;
}

namespace {
template <typename Counts, typename Count>
std::string summary(const Counts& counts, Count count, const std::string& single) {
    if (counts.size() <= 1) return single;
    std::string text;
    for (const auto& [name, entry] : counts)
        text += fmt::format("{}{} x{}", text.empty() ? "" : ", ", name, count(entry));
    return text;
}
}  // namespace

std::string Model::stored_summary() const {
    return summary(
        stored_dtypes_, [](const StoredShare& s) { return s.tensors; }, stored_dtype());
}

std::string Model::compute_summary() const {
    return summary(
        compute_formats(), [](std::size_t n) { return n; }, dtype());
}

std::size_t Model::resident_weight_bytes() const {
    std::size_t total = 0;
    for (const backend::Weight* w : matrices()) total += w->resident_bytes();
    return total;
}

// x = embed[tokens] (+ wpe[positions]); per layer: x += attn(norm(x)); x += mlp(norm(x));
// logits = norm(x) · lm_headᵀ (the embeddings when tied).
void Model::forward(const Batch& batch, backend::KvStorage& kv, Workspace& ws,
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

void Model::norm(const Norm& norm, backend::MatrixView x, backend::MatrixView y) const {
    if (config_.norm == NormKind::kRmsNorm)
        backend_->rms_norm(x, *norm.weight, config_.layer_norm_epsilon, y);
    else
        backend_->layer_norm(x, *norm.weight, *norm.bias, config_.layer_norm_epsilon, y);
}

backend::AttentionParams Model::attention_params(int i) const {
    const ModelConfig& c = config_;
    const Layer& layer = layers_[i];
    backend::AttentionParams params{.n_head = c.n_head,
                                    .n_kv_head = c.n_kv_head,
                                    .head_dim = c.head_dim,
                                    .scale = 1.0f,
                                    .window = c.layer_windows[i],
                                    .q_norm = layer.q_norm.get(),
                                    .k_norm = layer.k_norm.get(),
                                    .norm_eps = c.layer_norm_epsilon,
                                    .rotary = {}};
    if (c.scale_attn_weights) params.scale /= std::sqrt(static_cast<float>(c.head_dim));
    if (c.scale_attn_by_inverse_layer_idx) params.scale /= static_cast<float>(i + 1);
    if (inv_freq_) params.rotary = {inv_freq_.get(), c.rope->rotary_dim, rotary_attention_factor_};
    return params;
}

// The backend calls of one forward pass (validated by forward()).
void Model::issue_forward(const Batch& batch, backend::KvStorage& kv, Workspace& ws,
                          std::span<float> logits) const {
    const ModelConfig& c = config_;
    const int rows = static_cast<int>(batch.rows());
    const int out_rows = static_cast<int>(batch.logits_rows.size());
    backend::Backend& be = *backend_;
    const int C = c.n_embd;
    auto x = view(*ws.x_, rows, C);
    auto normed = view(*ws.normed_, rows, C);
    auto attn = view(*ws.normed_, rows, c.q_dim());  // the norm's output is dead once qkv is
    auto qkv = view(*ws.wide_, rows, c.q_dim() + 2 * c.kv_dim());
    // qkv is dead once attention has run.
    auto mlp = view(*ws.wide_, rows, c.gated_mlp ? 2 * c.n_inner : c.n_inner);

    be.embedding(*wte_, batch.tokens, x);
    if (wpe_) {
        be.embedding(*wpe_, batch.positions, normed);
        be.add(x, normed);
    }

    const backend::AttentionBatch attention_batch{batch.positions, batch.row_sequence,
                                                  batch.block_tables, kv.block_tokens()};
    for (int i = 0; i < c.n_layer; ++i) {
        const Layer& layer = layers_[i];
        norm(layer.attn_norm, x, normed);
        be.linear(normed, *layer.qkv, layer.qkv_bias.get(), qkv);
        be.attention(qkv, attention_batch, kv, i, attention_params(i), attn);
        be.linear(attn, *layer.o_proj, {.bias = layer.o_bias.get(), .accumulate = true}, x);

        norm(layer.mlp_norm, x, normed);
        if (c.gated_mlp) {
            be.linear(normed, *layer.up, layer.up_bias.get(), mlp);
            auto gated = view(*ws.gated_, rows, c.n_inner);
            be.gated_activation(mlp, activation_, gated);
            be.linear(gated, *layer.down, {.bias = layer.down_bias.get(), .accumulate = true}, x);
        } else {
            be.linear(normed, *layer.up, {.bias = layer.up_bias.get(), .activation = activation_},
                      mlp);
            be.linear(mlp, *layer.down, {.bias = layer.down_bias.get(), .accumulate = true}, x);
        }
    }
    if (out_rows == 0) return;
    auto selected = view(*ws.normed_, out_rows, C);  // logits rows are a subset of the rows
    be.gather_rows(x, batch.logits_rows, selected);
    norm(final_norm_, selected, selected);
    auto staging = view(*ws.logits_, out_rows, c.vocab_size);
    be.linear_to_host(selected, lm_head_ ? *lm_head_ : *wte_, staging, logits.data());
}

}  // namespace llmserve::model
