// ModelConfig and GenerationDefaults: every fixture folder's files, then damaged variants of a
// fixture config.json, each error checked for its code and for naming the source and field.
#include "model/config.h"

#include "test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <map>

namespace llmserve::model {
namespace {

namespace fs = std::filesystem;
using io::testing::expect_error;
using nlohmann::json;

const std::string kSource = "damaged/config.json";

// The config fields as the reference records them, read back from a parsed ModelConfig.
json field_of(const ModelConfig& config, const std::string& name) {
    const std::map<std::string, std::function<json()>> fields{
        {"vocab_size", [&] { return json(config.vocab_size); }},
        {"n_positions", [&] { return json(config.n_positions); }},
        {"n_embd", [&] { return json(config.n_embd); }},
        {"n_layer", [&] { return json(config.n_layer); }},
        {"n_head", [&] { return json(config.n_head); }},
        {"n_inner", [&] { return json(config.n_inner); }},
        {"activation_function", [&] { return json(std::string(to_string(config.activation))); }},
        {"layer_norm_epsilon", [&] { return json(config.layer_norm_epsilon); }},
        {"scale_attn_weights", [&] { return json(config.scale_attn_weights); }},
        {"scale_attn_by_inverse_layer_idx",
         [&] { return json(config.scale_attn_by_inverse_layer_idx); }},
        {"reorder_and_upcast_attn", [&] { return json(config.reorder_and_upcast_attn); }},
        {"tie_word_embeddings", [&] { return json(config.tie_word_embeddings); }},
        {"model_type", [&] { return json(config.model_type); }},
        {"bos_token_id", [&] { return config.bos_token_id ? json(*config.bos_token_id) : json(); }},
        {"pad_token_id", [&] { return config.pad_token_id ? json(*config.pad_token_id) : json(); }},
        {"eos_token_id",
         [&] {
             if (config.eos_token_ids.size() == 1) return json(config.eos_token_ids.front());
             return config.eos_token_ids.empty() ? json() : json(config.eos_token_ids);
         }},
    };
    const auto it = fields.find(name);
    return it == fields.end() ? json("<not a ModelConfig field>") : it->second();
}

void expect_same_value(const json& actual, const json& expected, const std::string& name) {
    if (expected.is_number_float()) {
        EXPECT_FLOAT_EQ(actual.get<float>(), expected.get<float>()) << name;
    } else {
        EXPECT_EQ(actual, expected) << name;
    }
}

TEST(ModelConfigFixtures, MatchesReferenceAndConfigJson) {
    const auto dirs = io::testing::model_dirs();
    ASSERT_FALSE(dirs.empty());
    for (const auto& dir : dirs) {
        SCOPED_TRACE(dir.string());
        const ModelConfig config = ModelConfig::load(dir / "config.json");
        const json reference = json::parse(io::testing::read_text(dir / "reference.json"));
        ASSERT_TRUE(reference.contains("config"));
        for (const auto& [name, value] : reference["config"].items()) {
            expect_same_value(field_of(config, name), value, name);
        }
        // Every field config.json sets, except n_inner when null (resolved to 4 * n_embd).
        const json file = json::parse(io::testing::read_text(dir / "config.json"));
        for (const auto& [name, value] : file.items()) {
            if (field_of(config, name) == json("<not a ModelConfig field>")) continue;
            if (name == "n_inner" && value.is_null()) {
                EXPECT_EQ(config.n_inner, 4 * config.n_embd);
                continue;
            }
            expect_same_value(field_of(config, name), value, name);
        }
        EXPECT_EQ(config.head_dim * config.n_head, config.n_embd);
        EXPECT_EQ(config.eos_token_id.has_value(), !config.eos_token_ids.empty());
    }
}

TEST(GenerationDefaultsFixtures, MatchTheFileOrAreEmpty) {
    for (const auto& dir : io::testing::model_dirs()) {
        SCOPED_TRACE(dir.string());
        const fs::path path = dir / "generation_config.json";
        const GenerationDefaults defaults = GenerationDefaults::load_if_present(path);
        if (!fs::exists(path)) {
            EXPECT_TRUE(defaults.eos_token_ids.empty());
            EXPECT_FALSE(defaults.bos_token_id || defaults.max_new_tokens || defaults.temperature);
            continue;
        }
        const json file = json::parse(io::testing::read_text(path));
        if (file.contains("eos_token_id") && !file["eos_token_id"].is_null()) {
            const json& eos = file["eos_token_id"];
            EXPECT_EQ(defaults.eos_token_ids, eos.is_array() ? eos.get<std::vector<int>>()
                                                             : std::vector<int>{eos.get<int>()});
        }
        if (file.contains("bos_token_id")) {
            EXPECT_EQ(defaults.bos_token_id, file["bos_token_id"].get<int>());
        }
        EXPECT_EQ(defaults.do_sample.has_value(), file.contains("do_sample"));
    }
}

// A fixture config.json, parsed so that tests can damage one field at a time.
json base_config() {
    return json::parse(io::testing::read_text(io::testing::model_dirs().front() / "config.json"));
}

ModelConfig parse(const json& config) {
    return ModelConfig::parse(config.dump(), kSource);
}

TEST(ModelConfigDamaged, MissingRequiredField) {
    for (const std::string field : {"vocab_size", "n_positions", "n_embd", "n_layer", "n_head"}) {
        SCOPED_TRACE(field);
        json config = base_config();
        config.erase(field);
        expect_error([&] { parse(config); }, ErrorCode::kCorruptData,
                     {kSource, "missing required field '" + field + "'"});
    }
}

TEST(ModelConfigDamaged, WrongTypes) {
    const std::vector<std::pair<std::string, json>> cases{
        {"n_head", "4"},
        {"n_embd", 64.0},
        {"n_layer", true},
        {"vocab_size", nullptr},
        {"n_inner", "big"},
        {"layer_norm_epsilon", "1e-5"},
        {"scale_attn_weights", 1},
        {"tie_word_embeddings", "yes"},
        {"bos_token_id", 1.5},
        {"eos_token_id", {1, "2"}},
        {"activation_function", 3},
        {"model_type", 2},
    };
    for (const auto& [field, value] : cases) {
        SCOPED_TRACE(field);
        json config = base_config();
        config[field] = value;
        expect_error([&] { parse(config); }, ErrorCode::kCorruptData,
                     {kSource, "field '" + field + "'"});
    }
}

TEST(ModelConfigDamaged, OutOfRangeValues) {
    const std::vector<std::pair<std::string, json>> cases{
        {"n_head", 0},
        {"n_embd", -64},
        {"vocab_size", 4294967296LL},
        {"n_inner", 0},
        {"layer_norm_epsilon", -1e-5},
        {"layer_norm_epsilon", 1e300},
        {"pad_token_id", -1},
        {"eos_token_id", {-1}},
    };
    for (const auto& [field, value] : cases) {
        SCOPED_TRACE(field);
        json config = base_config();
        config[field] = value;
        expect_error([&] { parse(config); }, ErrorCode::kCorruptData,
                     {kSource, "field '" + field + "'", value.is_array() ? "-1" : value.dump()});
    }
}

TEST(ModelConfigDamaged, BadJson) {
    expect_error([] { ModelConfig::parse(R"({"n_embd": 64,)", kSource); }, ErrorCode::kCorruptData,
                 {kSource, "invalid JSON", "line 1, column"});
    // Quoted input bytes are escaped, so the message stays valid UTF-8 for JSON error replies.
    const Error invalid_utf8 = io::testing::capture_error(
        [] { ModelConfig::parse("{\"model_type\": \"\xff\"}", kSource); });
    EXPECT_EQ(invalid_utf8.code(), ErrorCode::kCorruptData);
    const std::string message = invalid_utf8.what();
    EXPECT_NE(message.find("\\xff"), std::string::npos) << message;
    EXPECT_TRUE(std::all_of(message.begin(), message.end(), [](char c) {
        return static_cast<unsigned char>(c) < 0x80;
    })) << message;
    expect_error([] { ModelConfig::parse("", kSource); }, ErrorCode::kCorruptData,
                 {kSource, "invalid JSON"});
    expect_error([] { ModelConfig::parse("[64]", kSource); }, ErrorCode::kCorruptData,
                 {kSource, "expected a JSON object"});
    expect_error([] { ModelConfig::parse(R"({"n_embd": 64, "n_embd": 32})", kSource); },
                 ErrorCode::kCorruptData, {kSource, "duplicate key 'n_embd'"});
    expect_error([] { ModelConfig::parse(std::string(100, '[') + std::string(100, ']'), kSource); },
                 ErrorCode::kCorruptData, {kSource, "nested deeper"});
}

TEST(ModelConfigDamaged, UnknownActivationListsTheAllowedOnes) {
    json config = base_config();
    config["activation_function"] = "mish";
    expect_error([&] { parse(config); }, ErrorCode::kUnsupported,
                 {kSource, "'mish'", "gelu_new", "gelu_pytorch_tanh", "relu", "silu"});
}

TEST(ModelConfigDamaged, EmbeddingNotDivisibleByHeads) {
    json config = base_config();
    config["n_head"] = config["n_embd"].get<int>() + 1;
    expect_error(
        [&] { parse(config); }, ErrorCode::kCorruptData,
        {kSource, "n_embd " + config["n_embd"].dump(), "n_head " + config["n_head"].dump()});
}

TEST(ModelConfigDamaged, OtherModelTypesAreUnsupported) {
    json config = base_config();
    config["model_type"] = "bert";
    expect_error([&] { parse(config); }, ErrorCode::kUnsupported,
                 {kSource, "model_type", "'bert'", "gpt2, llama, mistral, qwen2, qwen3"});
}

TEST(ModelConfigDamaged, MissingFileIsNotFound) {
    io::testing::ScratchDir scratch;
    const fs::path path = scratch.path() / "config.json";
    expect_error([&] { ModelConfig::load(path); }, ErrorCode::kNotFound, {path.string()});
}

TEST(ModelConfig, ResolvesDefaultsAliasesAndEosLists) {
    json config = base_config();
    for (const auto& field :
         {"activation_function", "layer_norm_epsilon", "scale_attn_weights", "tie_word_embeddings",
          "model_type", "bos_token_id", "eos_token_id", "pad_token_id", "n_inner"}) {
        config.erase(field);
    }
    const int n_embd = config["n_embd"];
    config["hidden_size"] = n_embd;
    config.erase("n_embd");
    ModelConfig parsed = parse(config);
    EXPECT_EQ(parsed.n_embd, n_embd);
    EXPECT_EQ(parsed.n_inner, 4 * n_embd);
    EXPECT_EQ(parsed.activation, Activation::kGeluNew);
    EXPECT_FLOAT_EQ(parsed.layer_norm_epsilon, 1e-5f);
    EXPECT_TRUE(parsed.scale_attn_weights);
    EXPECT_TRUE(parsed.tie_word_embeddings);
    EXPECT_TRUE(parsed.model_type.empty());
    EXPECT_FALSE(parsed.bos_token_id || parsed.eos_token_id || parsed.pad_token_id);
    EXPECT_TRUE(parsed.eos_token_ids.empty());

    config["n_inner"] = 7;
    config["eos_token_id"] = {5, 9};
    config["activation_function"] = "swish";
    config["scale_attn_by_inverse_layer_idx"] = true;
    config["reorder_and_upcast_attn"] = true;
    config["layer_norm_epsilon"] = 0;
    parsed = parse(config);
    EXPECT_EQ(parsed.n_inner, 7);
    EXPECT_EQ(parsed.eos_token_ids, (std::vector<int>{5, 9}));
    EXPECT_EQ(parsed.eos_token_id, 5);
    EXPECT_EQ(parsed.activation, Activation::kSilu);
    EXPECT_TRUE(parsed.scale_attn_by_inverse_layer_idx);
    EXPECT_TRUE(parsed.reorder_and_upcast_attn);
    EXPECT_EQ(parsed.layer_norm_epsilon, 0.0f);
}

TEST(GenerationDefaults, ParsesEveryField) {
    const auto defaults = GenerationDefaults::parse(
        R"({"max_new_tokens": 32, "max_length": 64, "top_k": 40, "temperature": 0.7,
            "top_p": 0.9, "repetition_penalty": 1.1, "do_sample": true,
            "eos_token_id": [3, 4], "bos_token_id": 1, "pad_token_id": null,
            "transformers_version": "5.17.0"})",
        kSource);
    EXPECT_EQ(defaults.max_new_tokens, 32);
    EXPECT_EQ(defaults.max_length, 64);
    EXPECT_EQ(defaults.top_k, 40);
    EXPECT_FLOAT_EQ(*defaults.temperature, 0.7f);
    EXPECT_FLOAT_EQ(*defaults.top_p, 0.9f);
    EXPECT_FLOAT_EQ(*defaults.repetition_penalty, 1.1f);
    EXPECT_EQ(defaults.do_sample, true);
    EXPECT_EQ(defaults.eos_token_ids, (std::vector<int>{3, 4}));
    EXPECT_EQ(defaults.bos_token_id, 1);
    EXPECT_EQ(defaults.pad_token_id, std::nullopt);
}

TEST(GenerationDefaults, RejectsWrongTypesAndRanges) {
    const std::vector<std::pair<std::string, json>> cases{
        {"temperature", "hot"},    {"temperature", -0.5}, {"top_p", 1.5},
        {"repetition_penalty", 0}, {"top_k", -1},         {"max_new_tokens", 2.5},
        {"do_sample", "true"},     {"eos_token_id", "2"},
    };
    for (const auto& [field, value] : cases) {
        SCOPED_TRACE(field + " = " + value.dump());
        const json config{{field, value}};
        expect_error([&] { GenerationDefaults::parse(config.dump(), kSource); },
                     ErrorCode::kCorruptData, {kSource, "field '" + field + "'"});
    }
    expect_error([] { GenerationDefaults::parse("{", kSource); }, ErrorCode::kCorruptData,
                 {kSource, "invalid JSON"});
}

TEST(GenerationDefaults, AbsentFileIsEmpty) {
    io::testing::ScratchDir scratch;
    const auto defaults = GenerationDefaults::load_if_present(scratch.path() / "absent.json");
    EXPECT_FALSE(defaults.max_new_tokens || defaults.max_length || defaults.top_k ||
                 defaults.temperature || defaults.top_p || defaults.repetition_penalty ||
                 defaults.do_sample || defaults.bos_token_id || defaults.pad_token_id);
    EXPECT_TRUE(defaults.eos_token_ids.empty());
}

}  // namespace
}  // namespace llmserve::model
