// A decoder model's configuration (config.json), read by its family's reader into one spec that
// the single forward pass is parameterised by, and its default generation settings
// (generation_config.json); parsed strictly. JSON stays out of this header on purpose.
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

enum class NormKind { kLayerNorm, kRmsNorm };  // LayerNorm with a bias (GPT-2) | RMSNorm
std::string_view to_string(NormKind norm);

// Rotary position embedding, as transformers 5 standardises it (see README-llama.md of the
// fixtures): the "rope_scaling" dict (older spelling) wins over "rope_parameters"; theta from the
// dict, else the top-level "rope_theta", else 10000. kDynamic equals kDefault inside the context
// (NTK scaling starts past max_position_embeddings, which forward() refuses).
enum class RopeType { kDefault, kLinear, kDynamic, kYarn, kLlama3 };
std::string_view to_string(RopeType type);  // the config.json spelling
struct RopeConfig {
    RopeType type = RopeType::kDefault;
    double theta = 10000.0;
    int rotary_dim = 0;                                    // head_dim * partial_rotary_factor, even
    double factor = 1.0;                                   // linear, dynamic, yarn, llama3
    double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
    int original_max_position_embeddings = 0;              // llama3, yarn
    std::optional<double> attention_factor, beta_fast, beta_slow, mscale, mscale_all_dim;  // yarn
    bool truncate = true;                                                                  // yarn
    // GGUF's rope_freqs.weight (Llama 3 scaling baked into the file): inverse frequency i is
    // divided by frequency_divisors[i] after the type's own scaling. Empty: none.
    std::vector<float> frequency_divisors;
};

// Where the weights' names come from: a Hugging Face checkpoint or a GGUF file (llama.cpp's
// names: token_embd, blk.N.attn_q, ...).
enum class WeightNaming { kHuggingFace, kGguf };

struct ModelConfig {
    // Required and positive. n_inner is resolved: null/absent -> 4 * n_embd.
    // Hugging Face aliases are accepted when the GPT-2 name is absent: hidden_size (n_embd),
    // max_position_embeddings (n_positions), num_attention_heads (n_head),
    // num_hidden_layers (n_layer); Llama-family configs use the Hugging Face names
    // (intermediate_size for n_inner).
    int vocab_size = 0, n_positions = 0, n_embd = 0, n_layer = 0, n_head = 0, n_inner = 0;
    // Key/value heads (num_key_value_heads; n_head when absent) and the width of one head (an
    // explicit head_dim, else n_embd / n_head; qwen3 defaults to 128).
    int n_kv_head = 0, head_dim = 0;
    Activation activation = Activation::kGeluNew;
    NormKind norm = NormKind::kLayerNorm;
    float layer_norm_epsilon = 1e-5f;  // the norm's eps (rms_norm_eps for RMSNorm)
    // Positions: learned absolute embeddings (GPT-2's wpe) or rotary.
    std::optional<RopeConfig> rope;
    bool gated_mlp = false;  // down(act(gate(x)) * up(x)) instead of proj(act(fc(x)))
    bool qkv_bias = true, o_bias = true, mlp_bias = true;
    bool qk_norm = false;  // per-head RMSNorm of q and k (qwen3)
    // Per layer: the sliding window (attend to keys (p - window, p]), 0 for full attention.
    std::vector<int> layer_windows;
    bool scale_attn_weights = true;
    bool scale_attn_by_inverse_layer_idx = false;
    bool reorder_and_upcast_attn = false;
    bool tie_word_embeddings = true;
    // Token ids are non-negative. "eos_token_id" may be an int or a list: eos_token_ids holds all
    // of them and eos_token_id the first (empty/nullopt when null or absent).
    std::optional<int> bos_token_id, eos_token_id, pad_token_id;
    std::vector<int> eos_token_ids;
    // "gpt2" or empty (absent: GPT-2), "llama", "mistral", "qwen2", "qwen3"; anything else is
    // kUnsupported.
    std::string model_type;
    WeightNaming naming = WeightNaming::kHuggingFace;

    std::string_view family() const {
        return model_type.empty() ? std::string_view("gpt2") : std::string_view(model_type);
    }
    int kv_dim() const { return n_kv_head * head_dim; }  // floats per token and layer of K (or V)
    int q_dim() const { return n_head * head_dim; }

    // Parses config.json text with the reader of its model_type; `source` (usually the path)
    // names it in every error: bad JSON (with the parser's position), a missing required field,
    // a wrong type, a non-positive size, heads that do not divide (all kCorruptData); an unknown
    // model_type, activation, rope type or a field whose meaning is not implemented
    // (kUnsupported, naming the field and what is supported). Unknown fields are ignored.
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
