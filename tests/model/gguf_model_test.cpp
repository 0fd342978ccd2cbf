// The spec of GGUF files: every fixture's ModelConfig equals the one its source checkpoint's
// config.json gives (reference.json's source_config, or the vendored folder it names); files asking
// for what the forward pass cannot do are refused naming the architecture or key.
#include "model/gguf_model.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <sstream>

#include "backend/backend.h"
#include "model/model.h"
#include "tests/common/test_paths.h"
#include "tests/io/gguf_builder.h"
#include "tests/io/test_support.h"

namespace llmserve::model {
namespace {

using io::testing::GgufBuilder;
using nlohmann::json;

// The config.json of the checkpoint a fixture was converted from, when known.
std::optional<json> source_config(const json& reference) {
    if (reference.contains("source_config")) return reference.at("source_config");
    std::istringstream words(reference.at("source").get<std::string>());
    for (std::string word; words >> word;) {
        const auto path = testing::fixtures_dir() / word / "config.json";
        if (word.find('/') != std::string::npos && std::filesystem::exists(path))
            return json::parse(testing::read_text(path));
    }
    return std::nullopt;
}

TEST(GgufModel, FixtureSpecsEqualTheirSourceConfigs) {
    int compared = 0;
    for (const auto& dir : testing::subdirectories(testing::fixtures_dir() / "gguf")) {
        SCOPED_TRACE(dir.string());
        const json reference = json::parse(testing::read_text(dir / "reference.json"));
        const auto source = source_config(reference);
        if (!source) continue;
        const ModelConfig want = ModelConfig::parse(source->dump(), "source config.json");
        const io::GgufMapped mapped = io::open_gguf(dir / "model.gguf");
        const ModelConfig got = gguf_model_config(mapped.gguf);
        EXPECT_EQ(got.family(), want.family());
        EXPECT_EQ(got.vocab_size, want.vocab_size);
        EXPECT_EQ(got.n_positions, want.n_positions);
        EXPECT_EQ(got.n_embd, want.n_embd);
        EXPECT_EQ(got.n_layer, want.n_layer);
        EXPECT_EQ(got.n_head, want.n_head);
        EXPECT_EQ(got.n_kv_head, want.n_kv_head);
        EXPECT_EQ(got.head_dim, want.head_dim);
        EXPECT_EQ(got.n_inner, want.n_inner);
        EXPECT_EQ(got.norm, want.norm);
        EXPECT_FLOAT_EQ(got.layer_norm_epsilon, want.layer_norm_epsilon);
        EXPECT_EQ(got.gated_mlp, want.gated_mlp);
        EXPECT_EQ(got.qkv_bias, want.qkv_bias);
        EXPECT_EQ(got.o_bias, want.o_bias);
        EXPECT_EQ(got.mlp_bias, want.mlp_bias);
        EXPECT_EQ(got.qk_norm, want.qk_norm);
        EXPECT_EQ(got.tie_word_embeddings, want.tie_word_embeddings);
        EXPECT_EQ(got.rope.has_value(), want.rope.has_value());
        if (got.rope && want.rope) {
            EXPECT_EQ(got.rope->theta, want.rope->theta);
            EXPECT_EQ(got.rope->rotary_dim, want.rope->rotary_dim);
            EXPECT_EQ(got.rope->type, want.rope->type);
        }
        EXPECT_EQ(got.naming, WeightNaming::kGguf);
        ++compared;
    }
    EXPECT_GT(compared, 0) << "no GGUF fixture names a source config";
}

GgufBuilder llama_metadata() {
    GgufBuilder b;
    b.string("general.architecture", "llama");
    b.u32("llama.block_count", 1);
    b.u32("llama.context_length", 64);
    b.u32("llama.embedding_length", 32);
    b.u32("llama.feed_forward_length", 64);
    b.u32("llama.attention.head_count", 4);
    b.f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    b.tensor("token_embd.weight", {32, 10}, 0, 32 * 10 * 4);
    return b;
}

void expect_refused(const GgufBuilder& builder, ErrorCode code,
                    const std::vector<std::string>& fragments) {
    const auto bytes = builder.build();
    const io::GgufFile file = io::parse_gguf(bytes, "model.gguf");
    io::testing::expect_error([&] { gguf_model_config(file); }, code, fragments);
}

// The model reports the file's quantization mix (what /info shows): every quantized tensor of the
// file is counted under its type, and no type more often than the file holds it (a file may hold
// float tensors that the model reads as metadata, e.g. rope_freqs).
TEST(GgufModel, StoredDtypesAreTheFilesMix) {
    int files = 0;
    for (const auto& dir : testing::subdirectories(testing::fixtures_dir() / "gguf")) {
        SCOPED_TRACE(dir.string());
        const json reference = json::parse(testing::read_text(dir / "reference.json"));
        if (!reference.contains("tensor_types")) continue;
        const auto model = Model::load(
            dir / "model.gguf", {backend::make_cpu_backend(1), backend::WeightFormat::kAuto});
        std::size_t parameters = 0;
        for (const auto& [dtype, share] : model->stored_dtypes()) {
            std::string upper = dtype;
            std::transform(upper.begin(), upper.end(), upper.begin(),
                           [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
            ASSERT_TRUE(reference["tensor_types"].contains(upper)) << dtype;
            EXPECT_LE(share.tensors, reference["tensor_types"][upper].get<std::size_t>()) << dtype;
            parameters += share.parameters;
        }
        for (const auto& [type, count] : reference["tensor_types"].items()) {
            if (type == "F32" || type == "F16" || type == "BF16") continue;
            std::string lower = type;
            std::transform(lower.begin(), lower.end(), lower.begin(),
                           [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
            ASSERT_TRUE(model->stored_dtypes().contains(lower)) << type;
            EXPECT_EQ(model->stored_dtypes().at(lower).tensors, count.get<std::size_t>()) << type;
        }
        EXPECT_EQ(parameters, model->parameter_count());
        ++files;
    }
    EXPECT_GT(files, 0) << "no GGUF fixture with tensor_types";
}

TEST(GgufModel, ReadsTheSpecOfAMinimalLlamaFile) {
    const auto bytes = llama_metadata().build();
    const ModelConfig c = gguf_model_config(io::parse_gguf(bytes, "model.gguf"));
    EXPECT_EQ(c.vocab_size, 10);  // the rows of token_embd
    EXPECT_EQ(c.n_kv_head, 4);    // head_count_kv absent: = head_count
    EXPECT_EQ(c.head_dim, 8);
    EXPECT_TRUE(c.tie_word_embeddings);  // no output.weight
    ASSERT_TRUE(c.rope);
    EXPECT_EQ(c.rope->theta, 10000.0);  // rope.freq_base absent
    EXPECT_EQ(c.rope->rotary_dim, 8);
}

TEST(GgufModel, RefusesUnknownArchitecturesByName) {
    GgufBuilder falcon;
    falcon.string("general.architecture", "falcon");
    expect_refused(falcon, ErrorCode::kUnsupported,
                   {"model.gguf", "falcon", "gpt2, llama, qwen2, qwen3"});
}

TEST(GgufModel, MissingAndBadKeysAreNamed) {
    GgufBuilder missing;
    missing.string("general.architecture", "qwen2");
    expect_refused(missing, ErrorCode::kNotFound, {"model.gguf", "qwen2.block_count"});

    GgufBuilder zero = llama_metadata();
    zero.u32("llama.attention.head_count_kv", 3);
    expect_refused(zero, ErrorCode::kCorruptData, {"4 heads", "3 KV heads"});

    GgufBuilder scaling = llama_metadata();
    scaling.string("llama.rope.scaling.type", "longrope");
    expect_refused(scaling, ErrorCode::kUnsupported,
                   {"llama.rope.scaling.type", "longrope", "none, linear, yarn"});

    GgufBuilder text = llama_metadata();
    text.string("llama.rope.freq_base", "high");
    expect_refused(text, ErrorCode::kCorruptData, {"llama.rope.freq_base", "expected a number"});
}

TEST(GgufModel, RopeFreqsDivideTheFrequencies) {
    GgufBuilder b = llama_metadata();
    b.tensor("rope_freqs.weight", {4}, 0, 16);
    const auto bytes = b.build();
    const ModelConfig c = gguf_model_config(io::parse_gguf(bytes, "model.gguf"));
    ASSERT_TRUE(c.rope);
    // The builder fills data with bytes 0, 1, 2, ...: read the same floats back.
    const io::GgufFile file = io::parse_gguf(bytes, "model.gguf");
    std::vector<float> expected(4);
    std::memcpy(expected.data(), file.tensors[1].data.data(), 16);
    EXPECT_EQ(c.rope->frequency_divisors, expected);
}

}  // namespace
}  // namespace llmserve::model
