#include "model/config.h"

#include "common/error.h"
#include "io/json_util.h"
#include "io/mapped_file.h"
#include "model/config_fields.h"
#include "model/families.h"

#include <array>
#include <climits>
#include <cmath>
#include <limits>
#include <utility>

namespace llmserve::model {
namespace {

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

std::string_view to_string(NormKind norm) {
    return norm == NormKind::kRmsNorm ? "rms_norm" : "layer_norm";
}

std::string_view to_string(RopeType type) {
    switch (type) {
        case RopeType::kDefault:
            return "default";
        case RopeType::kLinear:
            return "linear";
        case RopeType::kDynamic:
            return "dynamic";
        case RopeType::kYarn:
            return "yarn";
        case RopeType::kLlama3:
            return "llama3";
    }
    return "?";
}

ModelConfig ModelConfig::parse(std::string_view json_text, const std::string& source) {
    const Json root = io::parse_json(json_text, source);
    const Fields fields(root, source);
    ModelConfig config;
    config.model_type = std::string(fields.string("model_type").value_or(""));
    if (fields.find("quantization_config") != nullptr)
        fail(ErrorCode::kUnsupported,
             "{}: field 'quantization_config' is not supported (llmserve reads float32, float16 "
             "and bfloat16 checkpoints and quantizes them itself: --dtype q8)",
             source);
    read_family_config(fields, config);  // kUnsupported for an unknown model_type
    if (config.n_head % config.n_kv_head != 0)
        fail(ErrorCode::kCorruptData,
             "{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", source,
             config.n_head, config.n_kv_head);
    if (config.layer_windows.empty()) config.layer_windows.assign(config.n_layer, 0);

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
