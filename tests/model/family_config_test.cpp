// The Llama-family config readers: each field that changes the math read as transformers 5 reads
// it (README-llama.md of the fixtures), refusals naming the field, and the RoPE frequency tables.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "common/error.h"
#include "model/config.h"
#include "model/rope.h"
#include "tests/common/expect_error.h"
#include "tests/common/test_paths.h"

namespace llmserve::model {
namespace {

using nlohmann::json;
const std::string kSource = "family/config.json";

json llama_config() {
    return json{{"model_type", "llama"},    {"vocab_size", 1000},
                {"hidden_size", 64},        {"intermediate_size", 172},
                {"num_hidden_layers", 3},   {"num_attention_heads", 4},
                {"num_key_value_heads", 2}, {"max_position_embeddings", 256}};
}

ModelConfig parse(const json& config) {
    return ModelConfig::parse(config.dump(), kSource);
}

// `body` throws an Error of `code` whose message names every one of `parts`.
template <typename Body>
void expect_refusal(Body body, ErrorCode code, std::initializer_list<std::string> parts) {
    const std::string message = testing::expect_error(code, body);
    for (const std::string& part : parts)
        EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' in: " << message;
}

TEST(FamilyConfig, LlamaDefaults) {
    const ModelConfig c = parse(llama_config());
    EXPECT_EQ(c.family(), "llama");
    EXPECT_EQ(c.n_kv_head, 2);
    EXPECT_EQ(c.head_dim, 16);
    EXPECT_EQ(c.kv_dim(), 32);
    EXPECT_EQ(c.norm, NormKind::kRmsNorm);
    EXPECT_FLOAT_EQ(c.layer_norm_epsilon, 1e-6f);
    EXPECT_TRUE(c.gated_mlp);
    EXPECT_EQ(c.activation, Activation::kSilu);
    EXPECT_FALSE(c.tie_word_embeddings);
    EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias || c.qk_norm);
    ASSERT_TRUE(c.rope);
    EXPECT_EQ(c.rope->type, RopeType::kDefault);
    EXPECT_EQ(c.rope->theta, 10000.0);
    EXPECT_EQ(c.rope->rotary_dim, 16);
    EXPECT_EQ(c.layer_windows, std::vector<int>(3, 0));
}

TEST(FamilyConfig, RopeParametersFollowTransformersPrecedence) {
    json config = llama_config();
    config["rope_theta"] = 7.0;
    config["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5.0}};
    EXPECT_EQ(parse(config).rope->theta, 5.0);  // inside the dict wins over the top level
    config["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};  // legacy key "type"
    ModelConfig c = parse(config);
    EXPECT_EQ(c.rope->type, RopeType::kLinear);  // rope_scaling wins over rope_parameters
    EXPECT_EQ(c.rope->theta, 7.0);               // ... and has no theta: the top-level one
    EXPECT_EQ(c.rope->factor, 2.0);
    config["rope_scaling"] = nullptr;  // null: rope_parameters again
    EXPECT_EQ(parse(config).rope->type, RopeType::kDefault);
    config.erase("rope_parameters");
    config.erase("rope_theta");
    EXPECT_EQ(parse(config).rope->theta, 10000.0);
    config["partial_rotary_factor"] = 0.5;
    EXPECT_EQ(parse(config).rope->rotary_dim, 8);
}

TEST(FamilyConfig, RefusesWhatItDoesNotImplementNamingTheField) {
    json config = llama_config();
    config["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 2.0}};
    expect_refusal([&] { parse(config); }, ErrorCode::kUnsupported,
                   {kSource, "rope_scaling", "rope_type", "'longrope'", "llama3"});
    config = llama_config();
    config["hidden_act"] = "mish";
    expect_refusal([&] { parse(config); }, ErrorCode::kUnsupported,
                   {kSource, "hidden_act", "'mish'"});
    config = llama_config();
    config["quantization_config"] = {{"quant_method", "awq"}};
    expect_refusal([&] { parse(config); }, ErrorCode::kUnsupported,
                   {kSource, "quantization_config"});
    config = llama_config();
    config["num_key_value_heads"] = 3;
    expect_refusal([&] { parse(config); }, ErrorCode::kCorruptData,
                   {kSource, "num_key_value_heads 3"});
    config = llama_config();
    config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
    expect_refusal([&] { parse(config); }, ErrorCode::kCorruptData,
                   {kSource, "llama3", "low_freq_factor"});
    config = llama_config();
    config.erase("intermediate_size");
    expect_refusal([&] { parse(config); }, ErrorCode::kCorruptData, {kSource, "intermediate_size"});
}

TEST(FamilyConfig, BiasesAndNormsPerFamily) {
    json config = llama_config();
    config["attention_bias"] = true;
    config["mlp_bias"] = true;
    ModelConfig c = parse(config);
    EXPECT_TRUE(c.qkv_bias && c.o_bias && c.mlp_bias);
    config["model_type"] = "mistral";
    c = parse(config);
    EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias);
    config["model_type"] = "qwen2";
    c = parse(config);
    EXPECT_TRUE(c.qkv_bias);
    EXPECT_FALSE(c.o_bias || c.mlp_bias || c.qk_norm);
    config["model_type"] = "qwen3";
    c = parse(config);
    EXPECT_TRUE(c.qkv_bias && c.o_bias && c.qk_norm);
    EXPECT_FALSE(c.mlp_bias);
    EXPECT_EQ(c.head_dim, 128);  // qwen3's default when the key is absent
    config["head_dim"] = nullptr;
    EXPECT_EQ(parse(config).head_dim, 16);  // present but null: hidden / heads
}

TEST(FamilyConfig, SlidingWindowsPerLayer) {
    json config = llama_config();
    config["model_type"] = "mistral";
    EXPECT_EQ(parse(config).layer_windows, std::vector<int>(3, 4096));  // absent: 4096
    config["sliding_window"] = nullptr;
    EXPECT_EQ(parse(config).layer_windows, std::vector<int>(3, 0));
    config["sliding_window"] = 32;
    EXPECT_EQ(parse(config).layer_windows, std::vector<int>(3, 32));

    config["model_type"] = "qwen2";
    EXPECT_EQ(parse(config).layer_windows, std::vector<int>(3, 0));  // use_sliding_window unset
    config["use_sliding_window"] = true;
    config["max_window_layers"] = 1;
    EXPECT_EQ(parse(config).layer_windows, (std::vector<int>{0, 32, 32}));
    config["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention"};
    EXPECT_EQ(parse(config).layer_windows, (std::vector<int>{32, 0, 32}));
    config["use_sliding_window"] = false;
    expect_refusal([&] { parse(config); }, ErrorCode::kCorruptData,
                   {kSource, "layer_types", "sliding_window"});
    config["layer_types"] = {"full_attention", "chunked_attention", "full_attention"};
    expect_refusal([&] { parse(config); }, ErrorCode::kUnsupported,
                   {kSource, "layer_types[1]", "chunked_attention"});
}

// transformers' llama3 rule on the fixture's RoPE (theta 5e5, head_dim 16, factor 8, low 1,
// high 4, original context 64): of the 8 frequencies 1 is kept, 1 smoothed, 6 divided by 8.
TEST(RotaryTable, Llama3KeepsSmoothsAndDividesTheFixturesFrequencies) {
    const ModelConfig c = ModelConfig::load(testing::fixtures_dir() /
                                            "models-llama/llama31-tiny-rope-scaling/config.json");
    ASSERT_EQ(c.rope->type, RopeType::kLlama3);
    RopeConfig plain = *c.rope;
    plain.type = RopeType::kDefault;
    const RotaryTable scaled = rotary_table(*c.rope), base = rotary_table(plain);
    ASSERT_EQ(scaled.inv_freq.size(), 8u);
    int kept = 0, divided = 0, smoothed = 0;
    for (std::size_t i = 0; i < 8; ++i) {
        if (scaled.inv_freq[i] == base.inv_freq[i])
            ++kept;
        else if (std::abs(scaled.inv_freq[i] * 8.0f / base.inv_freq[i] - 1.0f) < 1e-6f)
            ++divided;
        else if (scaled.inv_freq[i] < base.inv_freq[i] && scaled.inv_freq[i] > base.inv_freq[i] / 8)
            ++smoothed;
    }
    EXPECT_EQ(kept, 1);
    EXPECT_EQ(smoothed, 1);
    EXPECT_EQ(divided, 6);
    EXPECT_EQ(scaled.attention_factor, 1.0f);
}

TEST(RotaryTable, DefaultLinearAndYarn) {
    RopeConfig rope;
    rope.theta = 10000.0;
    rope.rotary_dim = 8;
    const RotaryTable base = rotary_table(rope);
    for (int i = 0; i < 4; ++i)
        EXPECT_NEAR(base.inv_freq[i], std::pow(10000.0, -2.0 * i / 8), 1e-7);
    rope.type = RopeType::kLinear;
    rope.factor = 4.0;
    const RotaryTable linear = rotary_table(rope);
    for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(linear.inv_freq[i], base.inv_freq[i] / 4.0f);
    rope.type = RopeType::kYarn;
    rope.original_max_position_embeddings = 64;
    const RotaryTable yarn = rotary_table(rope);
    EXPECT_FLOAT_EQ(yarn.attention_factor, static_cast<float>(0.1 * std::log(4.0) + 1.0));
    // The highest frequency is extrapolated (kept), the lowest interpolated (divided).
    EXPECT_FLOAT_EQ(yarn.inv_freq[0], base.inv_freq[0]);
    EXPECT_FLOAT_EQ(yarn.inv_freq[3], base.inv_freq[3] / 4.0f);
}

}  // namespace
}  // namespace llmserve::model
