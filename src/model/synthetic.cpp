#include "model/synthetic.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "common/error.h"
#include "io/mapped_file.h"
#include "model/families.h"

namespace llmserve::model {

namespace {

// The published config.json of each shape (the fields that shape the computation), read by the
// family readers like any checkpoint's.
struct PublishedShape {
    std::string_view name;
    std::string_view config_json;
};
constexpr PublishedShape kShapes[] = {
    {"gpt2", R"({"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768,
                 "n_layer": 12, "n_head": 12, "bos_token_id": 50256, "eos_token_id": 50256})"},
    {"gpt2-medium",
     R"({"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 1024,
         "n_layer": 24, "n_head": 16, "bos_token_id": 50256, "eos_token_id": 50256})"},
    {"gpt2-large",
     R"({"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 1280,
         "n_layer": 36, "n_head": 20, "bos_token_id": 50256, "eos_token_id": 50256})"},
    {"gpt2-xl", R"({"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 1600,
                    "n_layer": 48, "n_head": 25, "bos_token_id": 50256, "eos_token_id": 50256})"},
    // Qwen/Qwen2.5-0.5B
    {"qwen2.5-0.5b",
     R"({"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896,
         "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
         "num_key_value_heads": 2, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
         "rope_theta": 1000000.0, "tie_word_embeddings": true, "hidden_act": "silu",
         "use_sliding_window": false, "bos_token_id": 151643, "eos_token_id": 151643})"},
    // HuggingFaceTB/SmolLM2-135M
    {"smollm2-135m",
     R"({"model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
         "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
         "num_key_value_heads": 3, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
         "rope_theta": 100000, "tie_word_embeddings": true, "hidden_act": "silu",
         "bos_token_id": 0, "eos_token_id": 0})"},
    // meta-llama/Llama-3.2-1B
    {"llama-3.2-1b",
     R"({"model_type": "llama", "vocab_size": 128256, "hidden_size": 2048,
         "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
         "num_key_value_heads": 8, "head_dim": 64, "max_position_embeddings": 131072,
         "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": true,
         "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                          "original_max_position_embeddings": 8192, "rope_type": "llama3"},
         "hidden_act": "silu", "bos_token_id": 128000, "eos_token_id": 128001})"},
};

}  // namespace

ModelConfig published_shape(std::string_view name) {
    std::string names;
    for (const PublishedShape& shape : kShapes) {
        if (shape.name == name)
            return ModelConfig::parse(shape.config_json,
                                      "<published shape " + std::string(name) + ">");
        names += names.empty() ? "" : ", ";
        names += shape.name;
    }
    fail_param("shape", "unknown model shape '{}'; expected one of {}", name, names);
}

namespace {

// What a tensor is to llama.cpp's choice of a mixture's types.
enum class Role { kOther, kAttnV, kDown, kOutput };

struct TensorSpec {
    std::string name;
    std::vector<std::int64_t> shape;
    float constant;  // NaN: random
    Role role = Role::kOther;
    int layer = -1;
};

// Every tensor the loader asks for, from the family's name table: norms of ones, zero biases,
// random matrices.
std::vector<TensorSpec> tensor_specs(const ModelConfig& c) {
    const TensorNames& names = tensor_names(c);
    const std::int64_t C = c.n_embd, I = c.n_inner, Q = c.q_dim(), KV = c.kv_dim();
    const float random = std::nanf("");
    // Tied embeddings are the output projection too.
    std::vector<TensorSpec> specs = {{names.embed,
                                      {c.vocab_size, C},
                                      random,
                                      c.tie_word_embeddings ? Role::kOutput : Role::kOther}};
    if (!c.rope) specs.push_back({names.position_embed, {c.n_positions, C}, random});
    auto norm = [&](const std::string& weight) {
        specs.push_back({weight, {C}, 1.0f});
        if (c.norm == NormKind::kLayerNorm)
            specs.push_back({TensorNames::bias_of(weight), {C}, 0.0f});
    };
    // Parts of one product with their output widths (a single part holds them all).
    // `roles`: of each part, when there are as many parts as outputs.
    auto product = [&](const std::vector<std::string>& parts, std::vector<std::int64_t> outs,
                       std::int64_t in, bool bias, int layer, std::vector<Role> roles) {
        if (parts.size() == 1 && outs.size() > 1) {
            outs = {std::accumulate(outs.begin(), outs.end(), std::int64_t{0})};
            roles = {Role::kOther};
        }
        for (std::size_t i = 0; i < parts.size(); ++i) {
            std::string name = parts[i];
            name.replace(name.find("{}"), 2, std::to_string(layer));
            specs.push_back({name,
                             names.layout == backend::MatrixLayout::kInOut
                                 ? std::vector<std::int64_t>{in, outs[i]}
                                 : std::vector<std::int64_t>{outs[i], in},
                             random, roles[i], layer});
            if (bias) specs.push_back({TensorNames::bias_of(name), {outs[i]}, 0.0f});
        }
    };
    auto layer_name = [](std::string pattern, int layer) {
        return pattern.replace(pattern.find("{}"), 2, std::to_string(layer));
    };
    for (int i = 0; i < c.n_layer; ++i) {
        norm(layer_name(names.attn_norm, i));
        product(names.qkv, {Q, KV, KV}, C, c.qkv_bias, i,
                {Role::kOther, Role::kOther, Role::kAttnV});
        if (c.qk_norm) {
            specs.push_back({layer_name(names.q_norm, i), {c.head_dim}, 1.0f});
            specs.push_back({layer_name(names.k_norm, i), {c.head_dim}, 1.0f});
        }
        product({names.o_proj}, {C}, Q, c.o_bias, i, {Role::kOther});
        norm(layer_name(names.mlp_norm, i));
        product(names.up,
                c.gated_mlp ? std::vector<std::int64_t>{I, I} : std::vector<std::int64_t>{I}, C,
                c.mlp_bias, i, {Role::kOther, Role::kOther});
        product({names.down}, {C}, I, c.mlp_bias, i, {Role::kDown});
    }
    norm(names.final_norm);
    if (!c.tie_word_embeddings)
        specs.push_back({names.lm_head, {c.vocab_size, C}, random, Role::kOutput});
    return specs;
}

std::uint16_t f32_to_half_bits(float value, DType dtype) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    if (dtype == DType::kBF16)
        return static_cast<std::uint16_t>((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
    // Values here are small normals or exact constants: round the mantissa, no subnormal/overflow
    // handling needed.
    if ((bits & 0x7fffffffu) == 0) return static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
    const std::uint32_t sign = (bits >> 16) & 0x8000u;
    const int exponent = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
    if (exponent <= 0) return static_cast<std::uint16_t>(sign);
    const std::uint32_t mantissa = (bits & 0x7fffffu) + 0x1000u;  // round to nearest
    return static_cast<std::uint16_t>(sign | (static_cast<std::uint32_t>(exponent) << 10) |
                                      (mantissa >> 13));
}

// The bytes of one row of `values` stored as `dtype` (block types for matrices only).
void encode_row(const float* values, std::size_t count, DType dtype, std::byte* out) {
    if (dtype == DType::kF32) {
        std::memcpy(out, values, count * 4);
        return;
    }
    if (!is_quantized(dtype)) {
        for (std::size_t i = 0; i < count; ++i) {
            const std::uint16_t half = f32_to_half_bits(values[i], dtype);
            std::memcpy(out + i * 2, &half, 2);
        }
        return;
    }
    // Per block of 32, after llama.cpp's reference quantizers: Q8_0 d = max|x| / 127,
    // q = round(x / d).
    // Q4_0 / Q5_0: d = (the value of largest magnitude) / -8 (-16), n = round(x / d) + 8 (16)
    // clamped to [0, 15] ([0, 31]). Q5_1: d = (max - min) / 31, m = min, n = round((x - m) / d).
    for (std::size_t b = 0; b < count / 32; ++b) {
        const float* x = values + b * 32;
        std::byte* block = out + b * block_bytes(dtype);
        auto store_half = [&](std::size_t at, float value) {
            const std::uint16_t half = f32_to_half_bits(value, DType::kF16);
            std::memcpy(block + at, &half, 2);
        };
        if (dtype == DType::kQ8_0) {
            float amax = 0.0f;
            for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(x[i]));
            const float d = amax / 127.0f, inverse = d != 0.0f ? 1.0f / d : 0.0f;
            store_half(0, d);
            for (int i = 0; i < 32; ++i)
                block[2 + i] =
                    static_cast<std::byte>(static_cast<std::int8_t>(std::round(x[i] * inverse)));
            continue;
        }
        float d, offset = 0.0f;
        int levels = 15, zero = 8;
        std::size_t nibbles_at = 2, fifth_at = 0;
        if (dtype == DType::kQ5_1) {
            const auto [low, high] = std::minmax_element(x, x + 32);
            d = (*high - *low) / 31.0f;
            offset = *low;
            levels = 31, zero = 0, fifth_at = 4, nibbles_at = 8;
            store_half(0, d);
            store_half(2, offset);
        } else {
            float extreme = 0.0f;
            for (int i = 0; i < 32; ++i)
                if (std::abs(x[i]) > std::abs(extreme)) extreme = x[i];
            const bool five_bits = dtype == DType::kQ5_0;
            d = extreme / (five_bits ? -16.0f : -8.0f);
            if (five_bits) levels = 31, zero = 16, fifth_at = 2, nibbles_at = 6;
            store_half(0, d);
        }
        const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
        std::uint32_t fifth = 0;
        auto level = [&](int i) {
            const int n = std::clamp(static_cast<int>(std::round((x[i] - offset) * inverse)) + zero,
                                     0, levels);
            fifth |= static_cast<std::uint32_t>(n >> 4) << i;
            return static_cast<std::uint8_t>(n & 0x0f);
        };
        for (int i = 0; i < 16; ++i)
            block[nibbles_at + i] = static_cast<std::byte>(level(i) | (level(i + 16) << 4));
        if (fifth_at != 0) std::memcpy(block + fifth_at, &fifth, 4);
    }
}

bool is_k_quant(DType t) {
    return t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kQ6_K;
}

// llama.cpp's use_more_bits(): the layers of a Q4_K_M file whose attn_v and ffn_down get Q6_K.
bool use_more_bits(int layer, int layers) {
    return layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
}

// The type of matrix `spec` in `weights`. As llama.cpp does, a K-quant tensor whose rows are not
// whole 256-value super-blocks takes llama.cpp's 32-value fallback instead: Q5_0 for Q4_K, Q5_1
// for Q5_K, Q8_0 for Q6_K.
DType matrix_dtype(const TensorSpec& spec, DType dtype, bool q4_k_m, int layers) {
    DType type = dtype;
    if (q4_k_m)
        type = spec.role == Role::kOutput ||
                       ((spec.role == Role::kAttnV || spec.role == Role::kDown) &&
                        use_more_bits(spec.layer, layers))
                   ? DType::kQ6_K
                   : DType::kQ4_K;
    if (is_k_quant(type) && spec.shape.back() % 256 != 0)
        return type == DType::kQ4_K   ? DType::kQ5_0
               : type == DType::kQ5_K ? DType::kQ5_1
                                      : DType::kQ8_0;
    return type;
}

// Random but valid K-quant blocks for `count` values: random 6-bit scales and mins (Q6_K: int8
// scales) and values, fp16 d and dmin chosen so that weights span about [-0.035, 0.035] like
// the float weights' uniform draw.
void random_k_quant_row(DType type, std::size_t count, std::byte* out, std::uint64_t& state) {
    const std::size_t bytes = row_bytes(type, count);
    for (std::size_t i = 0; i < bytes; ++i) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out[i] = static_cast<std::byte>(state >> 56);
    }
    // Q4_K / Q5_K: w = d * scale * n - dmin * min, scale and min in [0, 63] (mean 32), n up to
    // 15 / 31. Q6_K: w = d * scale * (q - 32), |scale| about 64 on average.
    const float d = type == DType::kQ4_K   ? 0.07f / (15 * 32)
                    : type == DType::kQ5_K ? 0.07f / (31 * 32)
                                           : 0.035f / (64 * 32);
    const std::uint16_t d_bits = f32_to_half_bits(d, DType::kF16);
    const std::uint16_t dmin_bits = f32_to_half_bits(0.035f / 32, DType::kF16);
    for (std::size_t at = 0; at < bytes; at += block_bytes(type)) {
        if (type == DType::kQ6_K) {
            std::memcpy(out + at + 208, &d_bits, 2);
            continue;
        }
        std::memcpy(out + at, &d_bits, 2);
        std::memcpy(out + at + 2, &dmin_bits, 2);
    }
}

}  // namespace

std::shared_ptr<const Model> synthetic_model(const ModelConfig& config, DType dtype,
                                             const LoadOptions& options, std::string name,
                                             SyntheticMix mix) {
    const auto specs = tensor_specs(config);
    const bool q4_k_m = mix == SyntheticMix::kQ4_K_M;
    if (q4_k_m) dtype = DType::kQ4_K;
    // Block types hold the matrices; vectors (norms, biases) stay f32 as in GGUF files.
    auto stored_as = [&](const TensorSpec& spec) {
        if (!is_quantized(dtype)) return dtype;
        return spec.shape.size() == 1 ? DType::kF32
                                      : matrix_dtype(spec, dtype, q4_k_m, config.n_layer);
    };
    auto bytes_of = [&](const auto& spec) {
        std::size_t count = 1;
        for (auto d : spec.shape) count *= static_cast<std::size_t>(d);
        return row_bytes(stored_as(spec), count);
    };
    std::size_t total = 0;
    for (const auto& spec : specs) {
        if (is_quantized(dtype) && spec.shape.back() % 32 != 0)
            fail(ErrorCode::kInvalidArgument,
                 "shape '{}': tensor '{}' rows of {} are not whole "
                 "{} blocks",
                 name, spec.name, spec.shape.back(), to_string(dtype));
        total += bytes_of(spec);
    }
    // An anonymous in-memory file, mapped like a checkpoint so the model takes the same loading
    // path.
    const int fd = memfd_create("llmserve-synthetic", 0);
    if (fd < 0) fail(ErrorCode::kUnavailable, "memfd_create failed: {}", std::strerror(errno));
    if (ftruncate(fd, static_cast<off_t>(total)) != 0) {
        close(fd);
        fail(ErrorCode::kResourceExhausted, "cannot reserve {} bytes for synthetic weights", total);
    }
    void* raw = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (raw == MAP_FAILED) {
        close(fd);
        fail(ErrorCode::kResourceExhausted, "cannot map {} bytes for synthetic weights", total);
    }
    auto* out = static_cast<std::byte*>(raw);
    std::uint64_t state = 0x243f6a8885a308d3ull;
    const float half_width = 0.02f * std::sqrt(3.0f);  // uniform with standard deviation 0.02
    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    std::size_t offset = 0;
    for (const auto& spec : specs) {
        const DType stored = stored_as(spec);
        const auto cols = static_cast<std::size_t>(spec.shape.back());
        const std::size_t rows =
            spec.shape.size() == 1 ? 1 : static_cast<std::size_t>(spec.shape[0]);
        if (is_k_quant(stored)) {
            random_k_quant_row(stored, rows * cols, out + offset, state);
            ranges.emplace_back(offset, bytes_of(spec));
            offset += bytes_of(spec);
            continue;
        }
        std::vector<float> row(cols);
        for (std::size_t r = 0; r < rows; ++r) {
            for (std::size_t i = 0; i < cols; ++i) {
                float value = spec.constant;
                if (std::isnan(value)) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    value = (static_cast<float>(state >> 40) / static_cast<float>(1 << 24) * 2.0f -
                             1.0f) *
                            half_width;
                }
                row[i] = value;
            }
            encode_row(row.data(), cols, stored, out + offset + r * row_bytes(stored, cols));
        }
        ranges.emplace_back(offset, bytes_of(spec));
        offset += bytes_of(spec);
    }
    munmap(raw, total);
    io::MappedFile file = io::MappedFile::open("/proc/self/fd/" + std::to_string(fd));
    close(fd);  // the mapping keeps the memory alive
    std::vector<io::TensorView> views;
    for (std::size_t i = 0; i < specs.size(); ++i) {
        io::TensorView view;
        view.name = specs[i].name;
        view.dtype = stored_as(specs[i]);
        view.shape = specs[i].shape;
        view.data = file.bytes().subspan(ranges[i].first, ranges[i].second);
        view.file = "<synthetic " + name + ">";
        views.push_back(std::move(view));
    }
    io::WeightStore store{std::filesystem::path("<synthetic>")};
    store.add_file(std::move(file), std::move(views));
    return Model::from_weights(config, GenerationDefaults{}, std::move(store), std::move(name),
                               options);
}

}  // namespace llmserve::model
