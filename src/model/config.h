// A GPT-2 model's configuration (config.json) and its default generation settings
// (generation_config.json), parsed strictly. JSON stays out of this header on purpose.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::model {

// config.json "activation_function": gelu_new, gelu, gelu_fast, gelu_pytorch_tanh, relu,
// silu (or its alias swish).
enum class Activation { kGeluNew, kGelu, kGeluFast, kGeluPytorchTanh, kRelu, kSilu };

std::string_view to_string(Activation activation);  // the config.json spelling

struct ModelConfig {
    // Required and positive. n_inner is resolved: null/absent -> 4 * n_embd.
    // Hugging Face aliases are accepted when the GPT-2 name is absent: hidden_size (n_embd),
    // max_position_embeddings (n_positions), num_attention_heads (n_head),
    // num_hidden_layers (n_layer).
    int vocab_size = 0, n_positions = 0, n_embd = 0, n_layer = 0, n_head = 0, n_inner = 0;
    Activation activation = Activation::kGeluNew;
    float layer_norm_epsilon = 1e-5f;
    bool scale_attn_weights = true;
    bool scale_attn_by_inverse_layer_idx = false;
    bool reorder_and_upcast_attn = false;
    bool tie_word_embeddings = true;
    // Token ids are non-negative. "eos_token_id" may be an int or a list: eos_token_ids holds all
    // of them and eos_token_id the first (empty/nullopt when null or absent).
    std::optional<int> bos_token_id, eos_token_id, pad_token_id;
    std::vector<int> eos_token_ids;
    std::string model_type;  // "gpt2" or empty (absent); anything else is kUnsupported

    int head_dim() const { return n_embd / n_head; }

    // Parses config.json text; `source` (usually the path) names it in every error: bad JSON
    // (with the parser's position), a missing required field, a wrong type, a non-positive size,
    // n_embd not divisible by n_head (all kCorruptData); model_type other than gpt2, an unknown
    // activation (listing the allowed ones) (kUnsupported). Unknown fields are ignored.
    static ModelConfig parse(std::string_view json_text, const std::string& source);
    // Reads and parses the file; errors name its path (kNotFound when it does not exist).
    static ModelConfig load(const std::filesystem::path& config_json);
};

// Defaults from generation_config.json (all optional; absent file -> all empty). Fields that are
// null count as absent; a field with the wrong type or out of range is kCorruptData naming it.
struct GenerationDefaults {
    std::optional<int> max_new_tokens, max_length, top_k;  // each >= 0
    // temperature >= 0, 0 <= top_p <= 1, repetition_penalty > 0; all finite.
    std::optional<float> temperature, top_p, repetition_penalty;
    std::optional<bool> do_sample;
    std::vector<int> eos_token_ids;  // "eos_token_id" int or list
    std::optional<int> bos_token_id, pad_token_id;

    static GenerationDefaults parse(std::string_view json_text, const std::string& source);
    // All empty when the file does not exist; errors of parse() (naming the path) otherwise.
    static GenerationDefaults load_if_present(const std::filesystem::path& generation_config_json);
};

}  // namespace llmserve::model
