#include "model/families.h"

#include <array>
#include <climits>
#include <cmath>
#include <string_view>

#include "common/error.h"
#include "model/config_fields.h"

namespace llmserve::model {
namespace {

constexpr std::string_view kPositive = "a positive integer";

// ---- GPT-2 -------------------------------------------------------------------------------------

void read_gpt2(const Fields& fields, ModelConfig& config) {
    const std::string& source = fields.source();
    config.vocab_size = fields.required_size("vocab_size", "vocab_size");
    config.n_positions = fields.required_size("n_positions", "max_position_embeddings");
    config.n_embd = fields.required_size("n_embd", "hidden_size");
    config.n_layer = fields.required_size("n_layer", "num_hidden_layers");
    config.n_head = fields.required_size("n_head", "num_attention_heads");
    if (config.n_embd % config.n_head != 0) {
        fail(ErrorCode::kCorruptData, "{}: n_embd {} is not divisible by n_head {}", source,
             config.n_embd, config.n_head);
    }
    config.n_kv_head = config.n_head;
    config.head_dim = config.n_embd / config.n_head;
    if (const auto n_inner = fields.integer("n_inner", 1, "a positive integer or null")) {
        config.n_inner = *n_inner;
    } else if (config.n_embd > INT_MAX / 4) {
        fail(ErrorCode::kCorruptData, "{}: n_embd {} is too large for the default n_inner", source,
             config.n_embd);
    } else {
        config.n_inner = 4 * config.n_embd;
    }
    if (const auto activation = fields.string("activation_function")) {
        config.activation = parse_activation(*activation, "activation_function", source);
    }
    config.layer_norm_epsilon =
        fields.real("layer_norm_epsilon", 0.0, kFloatMax, false, "a number in [0, FLT_MAX]")
            .value_or(config.layer_norm_epsilon);
    config.scale_attn_weights =
        fields.boolean("scale_attn_weights").value_or(config.scale_attn_weights);
    config.scale_attn_by_inverse_layer_idx = fields.boolean("scale_attn_by_inverse_layer_idx")
                                                 .value_or(config.scale_attn_by_inverse_layer_idx);
    config.reorder_and_upcast_attn =
        fields.boolean("reorder_and_upcast_attn").value_or(config.reorder_and_upcast_attn);
    config.tie_word_embeddings =
        fields.boolean("tie_word_embeddings").value_or(config.tie_word_embeddings);
}

// ---- Llama, Mistral, Qwen2, Qwen3 --------------------------------------------------------------

constexpr std::array<std::pair<std::string_view, RopeType>, 5> kRopeTypes{{
    {"default", RopeType::kDefault},
    {"linear", RopeType::kLinear},
    {"dynamic", RopeType::kDynamic},
    {"yarn", RopeType::kYarn},
    {"llama3", RopeType::kLlama3},
}};

// The rope parameters as transformers 5 standardises them (README-llama.md of the fixtures).
RopeConfig read_rope(const Fields& fields, const ModelConfig& config) {
    const std::string& source = fields.source();
    std::string_view dict_name = "rope_scaling";
    const Json* dict = fields.object("rope_scaling");
    if (dict == nullptr) {
        dict_name = "rope_parameters";
        dict = fields.object("rope_parameters");
    }
    const Json empty = Json::object();
    const std::string dict_source = source + ": " + std::string(dict_name);
    const Fields rope_fields(dict != nullptr ? *dict : empty, dict_source);
    if (rope_fields.contains("full_attention") || rope_fields.contains("sliding_attention"))
        fail(ErrorCode::kUnsupported,
             "{}: per-layer-type rope parameters are not supported for model_type '{}'",
             dict_source, config.model_type);

    RopeConfig rope;
    constexpr std::string_view kPositiveNumber = "a positive number";
    rope.theta =
        rope_fields.number("rope_theta", 0.0, 1e300, true, kPositiveNumber)
            .value_or(
                fields.number("rope_theta", 0.0, 1e300, true, kPositiveNumber).value_or(10000.0));
    const auto type_name =
        rope_fields.string("rope_type").value_or(rope_fields.string("type").value_or("default"));
    bool known = false;
    std::string supported;
    for (const auto& [spelling, type] : kRopeTypes) {
        supported += supported.empty() ? "" : ", ";
        supported += spelling;
        if (spelling == type_name) {
            rope.type = type;
            known = true;
        }
    }
    if (!known)
        fail(ErrorCode::kUnsupported, "{}: rope_type '{}' is not supported (supported: {})",
             dict_source, type_name, supported);

    const double partial =
        fields.number("partial_rotary_factor", 0.0, 1.0, true, "a number in (0, 1]")
            .value_or(
                rope_fields.number("partial_rotary_factor", 0.0, 1.0, true, "a number in (0, 1]")
                    .value_or(1.0));
    rope.rotary_dim = static_cast<int>(config.head_dim * partial);
    if (rope.rotary_dim < 2 || rope.rotary_dim % 2 != 0)
        fail(ErrorCode::kCorruptData,
             "{}: partial_rotary_factor {} of head_dim {} gives {} rotary dimensions, expected "
             "an even number >= 2",
             source, partial, config.head_dim, rope.rotary_dim);

    constexpr std::string_view kFactor = "a number >= 1";
    if (rope.type != RopeType::kDefault) {
        const auto factor = rope_fields.number("factor", 1.0, 1e300, false, kFactor);
        if (!factor && rope.type != RopeType::kYarn)
            fail(ErrorCode::kCorruptData, "{}: rope_type '{}' needs field 'factor'", dict_source,
                 type_name);
        rope.factor = factor.value_or(0.0);
    }
    if (rope.type == RopeType::kLlama3 || rope.type == RopeType::kYarn) {
        rope.original_max_position_embeddings =
            fields.integer("original_max_position_embeddings", 1, kPositive)
                .value_or(rope_fields.integer("original_max_position_embeddings", 1, kPositive)
                              .value_or(config.n_positions));
    }
    if (rope.type == RopeType::kLlama3) {
        for (const auto name : {"low_freq_factor", "high_freq_factor"})
            if (!rope_fields.contains(name))
                fail(ErrorCode::kCorruptData, "{}: rope_type 'llama3' needs field '{}'",
                     dict_source, name);
        rope.low_freq_factor =
            *rope_fields.number("low_freq_factor", 0.0, 1e300, true, kPositiveNumber);
        rope.high_freq_factor =
            *rope_fields.number("high_freq_factor", 0.0, 1e300, true, kPositiveNumber);
        if (rope.high_freq_factor <= rope.low_freq_factor)
            fail(ErrorCode::kCorruptData,
                 "{}: high_freq_factor {} must be greater than low_freq_factor {}", dict_source,
                 rope.high_freq_factor, rope.low_freq_factor);
    }
    if (rope.type == RopeType::kYarn) {
        if (rope.factor == 0.0)
            rope.factor =
                static_cast<double>(config.n_positions) / rope.original_max_position_embeddings;
        auto optional_number = [&](std::string_view name) {
            return rope_fields.number(name, -1e300, 1e300, false, "a number");
        };
        rope.attention_factor = optional_number("attention_factor");
        rope.beta_fast = optional_number("beta_fast");
        rope.beta_slow = optional_number("beta_slow");
        rope.mscale = optional_number("mscale");
        rope.mscale_all_dim = optional_number("mscale_all_dim");
        rope.truncate = rope_fields.boolean("truncate").value_or(true);
    }
    return rope;
}

// Per-layer windows: mistral's sliding_window on every layer; qwen2/qwen3's only with
// use_sliding_window, on the layers layer_types (else max_window_layers) marks as sliding.
std::vector<int> read_windows(const Fields& fields, const ModelConfig& config) {
    const std::string& source = fields.source();
    constexpr std::string_view kWindow = "a positive integer or null";
    std::vector<int> windows(config.n_layer, 0);
    if (config.model_type == "mistral") {
        const int window = fields.contains("sliding_window")
                               ? fields.integer("sliding_window", 1, kWindow).value_or(0)
                               : 4096;
        windows.assign(config.n_layer, window);
        return windows;
    }
    if (config.model_type != "qwen2" && config.model_type != "qwen3") return windows;
    std::optional<int> window;
    if (fields.boolean("use_sliding_window").value_or(false))
        window =
            fields.contains("sliding_window") ? fields.integer("sliding_window", 1, kWindow) : 4096;
    const int max_window_layers = fields.integer("max_window_layers", 0, kPositive).value_or(28);
    std::vector<bool> sliding(config.n_layer);
    if (const Json* types = fields.find("layer_types")) {
        if (!types->is_array() || types->size() != static_cast<std::size_t>(config.n_layer))
            fail(ErrorCode::kCorruptData, "{}: field 'layer_types' is {}, expected a list of {}",
                 source, io::describe_json(*types), config.n_layer);
        for (int i = 0; i < config.n_layer; ++i) {
            const Json& type = (*types)[i];
            const bool full = type == "full_attention";
            if (!full && type != "sliding_attention")
                fail(ErrorCode::kUnsupported,
                     "{}: layer_types[{}] is {}, expected 'full_attention' or "
                     "'sliding_attention'",
                     source, i, io::describe_json(type));
            sliding[i] = !full;
        }
    } else {
        for (int i = 0; i < config.n_layer; ++i) sliding[i] = window && i >= max_window_layers;
    }
    for (int i = 0; i < config.n_layer; ++i) {
        if (!sliding[i]) continue;
        if (!window)
            fail(ErrorCode::kCorruptData,
                 "{}: layer_types asks for sliding attention but sliding_window is unset or "
                 "use_sliding_window is false",
                 source);
        windows[i] = *window;
    }
    return windows;
}

void read_llama_family(const Fields& fields, ModelConfig& config) {
    const std::string& source = fields.source();
    const std::string_view type = config.model_type;
    auto required = [&](std::string_view name) { return fields.required_size(name, name); };
    config.vocab_size = required("vocab_size");
    config.n_embd = required("hidden_size");
    config.n_inner = required("intermediate_size");
    config.n_layer = required("num_hidden_layers");
    config.n_head = required("num_attention_heads");
    config.n_positions = fields.integer("max_position_embeddings", 1, kPositive).value_or(2048);
    config.n_kv_head = fields.integer("num_key_value_heads", 1, kPositive).value_or(config.n_head);
    if (const auto head_dim = fields.integer("head_dim", 1, kPositive)) {
        config.head_dim = *head_dim;
    } else if (type == "qwen3" && !fields.contains("head_dim")) {
        config.head_dim = 128;
    } else if (config.n_embd % config.n_head != 0) {
        fail(ErrorCode::kCorruptData,
             "{}: hidden_size {} is not divisible by num_attention_heads {} (and no head_dim)",
             source, config.n_embd, config.n_head);
    } else {
        config.head_dim = config.n_embd / config.n_head;
    }
    config.activation =
        parse_activation(fields.string("hidden_act").value_or("silu"), "hidden_act", source);
    config.norm = NormKind::kRmsNorm;
    config.layer_norm_epsilon =
        fields.real("rms_norm_eps", 0.0, kFloatMax, false, "a number in [0, FLT_MAX]")
            .value_or(1e-6f);
    config.gated_mlp = true;
    config.tie_word_embeddings = fields.boolean("tie_word_embeddings").value_or(false);
    const bool attention_bias = fields.boolean("attention_bias").value_or(false);
    config.qkv_bias = type == "qwen2" || (type != "mistral" && attention_bias);
    config.o_bias = type != "qwen2" && type != "mistral" && attention_bias;
    config.mlp_bias = type == "llama" && fields.boolean("mlp_bias").value_or(false);
    config.qk_norm = type == "qwen3";
    if (const auto tp = fields.integer("pretraining_tp", 1, kPositive); tp && *tp != 1)
        fail(ErrorCode::kUnsupported, "{}: pretraining_tp {} is not supported (expected 1)", source,
             *tp);
    config.rope = read_rope(fields, config);
    config.layer_windows = read_windows(fields, config);
}

struct Family {
    std::string_view model_type;
    void (*read)(const Fields& fields, ModelConfig& config);
    TensorNames names;
};

TensorNames gpt2_names() {
    TensorNames n;
    n.embed = "wte.weight";
    n.position_embed = "wpe.weight";
    n.final_norm = "ln_f.weight";
    n.lm_head = "lm_head.weight";
    n.layout = backend::MatrixLayout::kInOut;  // Conv1D
    n.attn_norm = "h.{}.ln_1.weight";
    n.mlp_norm = "h.{}.ln_2.weight";
    n.qkv = {"h.{}.attn.c_attn.weight"};
    n.o_proj = "h.{}.attn.c_proj.weight";
    n.up = {"h.{}.mlp.c_fc.weight"};
    n.down = "h.{}.mlp.c_proj.weight";
    return n;
}

TensorNames llama_names() {
    TensorNames n;
    n.embed = "model.embed_tokens.weight";
    n.final_norm = "model.norm.weight";
    n.lm_head = "lm_head.weight";
    n.layout = backend::MatrixLayout::kOutIn;  // nn.Linear
    n.attn_norm = "model.layers.{}.input_layernorm.weight";
    n.mlp_norm = "model.layers.{}.post_attention_layernorm.weight";
    n.qkv = {"model.layers.{}.self_attn.q_proj.weight", "model.layers.{}.self_attn.k_proj.weight",
             "model.layers.{}.self_attn.v_proj.weight"};
    n.o_proj = "model.layers.{}.self_attn.o_proj.weight";
    n.q_norm = "model.layers.{}.self_attn.q_norm.weight";
    n.k_norm = "model.layers.{}.self_attn.k_norm.weight";
    n.up = {"model.layers.{}.mlp.gate_proj.weight", "model.layers.{}.mlp.up_proj.weight"};
    n.down = "model.layers.{}.mlp.down_proj.weight";
    return n;
}

// llama.cpp's names, whatever the architecture (GPT-2's products are [out, in] there too).
TensorNames gguf_names(bool gpt2) {
    TensorNames n;
    n.embed = "token_embd.weight";
    if (gpt2) n.position_embed = "position_embd.weight";
    n.final_norm = "output_norm.weight";
    n.lm_head = "output.weight";
    n.layout = backend::MatrixLayout::kOutIn;
    n.attn_norm = "blk.{}.attn_norm.weight";
    n.mlp_norm = "blk.{}.ffn_norm.weight";
    if (gpt2)
        n.qkv = {"blk.{}.attn_qkv.weight"};
    else
        n.qkv = {"blk.{}.attn_q.weight", "blk.{}.attn_k.weight", "blk.{}.attn_v.weight"};
    n.o_proj = "blk.{}.attn_output.weight";
    n.q_norm = "blk.{}.attn_q_norm.weight";
    n.k_norm = "blk.{}.attn_k_norm.weight";
    if (gpt2)
        n.up = {"blk.{}.ffn_up.weight"};
    else
        n.up = {"blk.{}.ffn_gate.weight", "blk.{}.ffn_up.weight"};
    n.down = "blk.{}.ffn_down.weight";
    return n;
}

const std::array<Family, 5>& families() {
    static const std::array<Family, 5> table{{
        {"gpt2", read_gpt2, gpt2_names()},
        {"llama", read_llama_family, llama_names()},
        {"mistral", read_llama_family, llama_names()},
        {"qwen2", read_llama_family, llama_names()},
        {"qwen3", read_llama_family, llama_names()},
    }};
    return table;
}

const Family& family_of(std::string_view model_type, const std::string& source) {
    for (const Family& family : families())
        if (family.model_type == model_type) return family;
    fail(ErrorCode::kUnsupported, "{}: model_type '{}' is not supported (supported: {})", source,
         model_type, supported_families());
}

}  // namespace

std::string TensorNames::bias_of(const std::string& weight_name) {
    constexpr std::string_view kWeight = "weight";
    return weight_name.substr(0, weight_name.size() - kWeight.size()) + "bias";
}

void read_family_config(const Fields& fields, ModelConfig& config) {
    family_of(config.family(), fields.source()).read(fields, config);
}

std::string supported_families() {
    std::string list;
    for (const Family& family : families()) {
        list += list.empty() ? "" : ", ";
        list += family.model_type;
    }
    return list;
}

const TensorNames& tensor_names(const ModelConfig& config) {
    if (config.naming == WeightNaming::kGguf) {
        static const TensorNames gpt2 = gguf_names(true), others = gguf_names(false);
        return config.family() == "gpt2" ? gpt2 : others;
    }
    return family_of(config.family(), "config").names;
}

}  // namespace llmserve::model
