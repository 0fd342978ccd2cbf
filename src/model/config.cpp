#include "model/config.h"

#include "common/error.h"
#include "io/json_util.h"
#include "io/mapped_file.h"

#include <array>
#include <climits>
#include <cmath>
#include <limits>
#include <utility>

namespace llmserve::model {
namespace {

using io::Json;

constexpr std::array<std::pair<std::string_view, Activation>, 7> kActivations{{
    {"gelu_new", Activation::kGeluNew},
    {"gelu", Activation::kGelu},
    {"gelu_fast", Activation::kGeluFast},
    {"gelu_pytorch_tanh", Activation::kGeluPytorchTanh},
    {"relu", Activation::kRelu},
    {"silu", Activation::kSilu},
    {"swish", Activation::kSilu},
}};

// Typed, checked access to the fields of one JSON object; every error names the source and field.
class Fields {
  public:
    Fields(const Json& object, const std::string& source) : object_(object), source_(source) {
        if (!object.is_object()) {
            fail(ErrorCode::kCorruptData, "{}: is {}, expected a JSON object", source,
                 io::describe_json(object));
        }
    }

    // The field, or nullptr when it is absent or null.
    const Json* find(std::string_view name) const {
        const auto it = object_.find(name);
        return it == object_.end() || it->is_null() ? nullptr : &*it;
    }

    // An integer in [minimum, INT_MAX]; nullopt when absent or null.
    std::optional<int> integer(std::string_view name, int minimum,
                               std::string_view expected) const {
        const Json* value = find(name);
        if (value == nullptr) return std::nullopt;
        return to_int(*value, name, minimum, expected);
    }

    int to_int(const Json& value, std::string_view name, int minimum,
               std::string_view expected) const {
        const auto number = io::json_to_int64(value);
        if (!number || *number < minimum || *number > INT_MAX) {
            fail(ErrorCode::kCorruptData, "{}: field '{}' is {}, expected {}", source_, name,
                 io::describe_json(value), expected);
        }
        return static_cast<int>(*number);
    }

    // A positive size, under `name` or else under the Hugging Face alias.
    int required_size(std::string_view name, std::string_view alias) const {
        std::string_view present = name;
        if (object_.find(name) == object_.end() && object_.find(alias) != object_.end()) {
            present = alias;
        }
        const auto it = object_.find(present);
        if (it == object_.end()) {
            fail(ErrorCode::kCorruptData, "{}: missing required field '{}'", source_, name);
        }
        return to_int(*it, present, 1, "a positive integer");
    }

    std::optional<bool> boolean(std::string_view name) const {
        const Json* value = find(name);
        if (value == nullptr) return std::nullopt;
        if (!value->is_boolean()) {
            fail(ErrorCode::kCorruptData, "{}: field '{}' is {}, expected true or false", source_,
                 name, io::describe_json(*value));
        }
        return value->get<bool>();
    }

    // A finite number in [minimum, maximum] (an open lower bound when `exclusive_minimum`).
    std::optional<float> real(std::string_view name, double minimum, double maximum,
                              bool exclusive_minimum, std::string_view expected) const {
        const Json* value = find(name);
        if (value == nullptr) return std::nullopt;
        const double number = value->is_number() ? value->get<double>() : NAN;
        const bool above_minimum = exclusive_minimum ? number > minimum : number >= minimum;
        if (!std::isfinite(number) || !above_minimum || number > maximum) {
            fail(ErrorCode::kCorruptData, "{}: field '{}' is {}, expected {}", source_, name,
                 io::describe_json(*value), expected);
        }
        return static_cast<float>(number);
    }

    std::optional<std::string_view> string(std::string_view name) const {
        const Json* value = find(name);
        if (value == nullptr) return std::nullopt;
        if (!value->is_string()) {
            fail(ErrorCode::kCorruptData, "{}: field '{}' is {}, expected a string", source_, name,
                 io::describe_json(*value));
        }
        return value->get_ref<const std::string&>();
    }

    // "eos_token_id": a token id or a list of them; empty when absent or null.
    std::vector<int> token_id_list(std::string_view name) const {
        constexpr std::string_view kExpected = "a non-negative token id or a list of them";
        const Json* value = find(name);
        if (value == nullptr) return {};
        if (!value->is_array()) return {to_int(*value, name, 0, kExpected)};
        std::vector<int> ids;
        for (const Json& element : *value) ids.push_back(to_int(element, name, 0, kExpected));
        return ids;
    }

  private:
    const Json& object_;
    const std::string& source_;
};

constexpr std::string_view kTokenId = "a non-negative token id";
// Finite doubles above this do not fit a float.
constexpr double kFloatMax = std::numeric_limits<float>::max();

Activation parse_activation(std::string_view name, const std::string& source) {
    for (const auto& [spelling, activation] : kActivations) {
        if (spelling == name) return activation;
    }
    std::string allowed;
    for (const auto& entry : kActivations) {
        allowed += allowed.empty() ? "" : ", ";
        allowed += entry.first;
    }
    fail(ErrorCode::kUnsupported, "{}: activation_function '{}' is not supported (supported: {})",
         source, name, allowed);
}

std::string_view as_text(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace

std::string_view to_string(Activation activation) {
    for (const auto& [spelling, value] : kActivations) {
        if (value == activation) return spelling;
    }
    return "?";
}

ModelConfig ModelConfig::parse(std::string_view json_text, const std::string& source) {
    const Json root = io::parse_json(json_text, source);
    const Fields fields(root, source);
    ModelConfig config;

    if (const auto model_type = fields.string("model_type")) {
        if (*model_type != "gpt2") {
            fail(ErrorCode::kUnsupported, "{}: model_type '{}' is not supported (expected 'gpt2')",
                 source, *model_type);
        }
        config.model_type = *model_type;
    }

    config.vocab_size = fields.required_size("vocab_size", "vocab_size");
    config.n_positions = fields.required_size("n_positions", "max_position_embeddings");
    config.n_embd = fields.required_size("n_embd", "hidden_size");
    config.n_layer = fields.required_size("n_layer", "num_hidden_layers");
    config.n_head = fields.required_size("n_head", "num_attention_heads");
    if (config.n_embd % config.n_head != 0) {
        fail(ErrorCode::kCorruptData, "{}: n_embd {} is not divisible by n_head {}", source,
             config.n_embd, config.n_head);
    }
    if (const auto n_inner = fields.integer("n_inner", 1, "a positive integer or null")) {
        config.n_inner = *n_inner;
    } else if (config.n_embd > INT_MAX / 4) {
        fail(ErrorCode::kCorruptData, "{}: n_embd {} is too large for the default n_inner", source,
             config.n_embd);
    } else {
        config.n_inner = 4 * config.n_embd;
    }

    if (const auto activation = fields.string("activation_function")) {
        config.activation = parse_activation(*activation, source);
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

    config.bos_token_id = fields.integer("bos_token_id", 0, kTokenId);
    config.pad_token_id = fields.integer("pad_token_id", 0, kTokenId);
    config.eos_token_ids = fields.token_id_list("eos_token_id");
    if (!config.eos_token_ids.empty()) config.eos_token_id = config.eos_token_ids.front();
    return config;
}

ModelConfig ModelConfig::load(const std::filesystem::path& config_json) {
    const io::MappedFile file = io::MappedFile::open(config_json);
    return parse(as_text(file.bytes()), config_json.string());
}

GenerationDefaults GenerationDefaults::parse(std::string_view json_text,
                                             const std::string& source) {
    const Json root = io::parse_json(json_text, source);
    const Fields fields(root, source);
    constexpr std::string_view kCount = "a non-negative integer";
    GenerationDefaults defaults;
    defaults.max_new_tokens = fields.integer("max_new_tokens", 0, kCount);
    defaults.max_length = fields.integer("max_length", 0, kCount);
    defaults.top_k = fields.integer("top_k", 0, kCount);
    defaults.temperature =
        fields.real("temperature", 0.0, kFloatMax, false, "a number in [0, FLT_MAX]");
    defaults.top_p = fields.real("top_p", 0.0, 1.0, false, "a number in [0, 1]");
    defaults.repetition_penalty =
        fields.real("repetition_penalty", 0.0, kFloatMax, true, "a number in (0, FLT_MAX]");
    defaults.do_sample = fields.boolean("do_sample");
    defaults.eos_token_ids = fields.token_id_list("eos_token_id");
    defaults.bos_token_id = fields.integer("bos_token_id", 0, kTokenId);
    defaults.pad_token_id = fields.integer("pad_token_id", 0, kTokenId);
    return defaults;
}

GenerationDefaults GenerationDefaults::load_if_present(
    const std::filesystem::path& generation_config_json) {
    std::error_code error;
    if (!std::filesystem::exists(generation_config_json, error)) return {};
    const io::MappedFile file = io::MappedFile::open(generation_config_json);
    return parse(as_text(file.bytes()), generation_config_json.string());
}

}  // namespace llmserve::model
