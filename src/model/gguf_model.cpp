#include "model/gguf_model.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>

#include "common/error.h"

namespace llmserve::model {
namespace {

constexpr std::array<std::string_view, 4> kArchitectures = {"gpt2", "llama", "qwen2", "qwen3"};

// Reads `{arch}.<key>` metadata with the file and key in every error.
class Keys {
  public:
    Keys(const io::GgufFile& file, std::string arch)
        : file_(file), prefix_(std::move(arch) + ".") {}

    std::string key(std::string_view name) const { return prefix_ + std::string(name); }
    bool has(std::string_view name) const { return file_.find(key(name)) != nullptr; }

    // A positive int, required.
    int size(std::string_view name) const { return checked_size(name, file_.integer(key(name))); }
    std::optional<int> optional_size(std::string_view name) const {
        const auto value = file_.optional_integer(key(name));
        if (!value) return std::nullopt;
        return checked_size(name, *value);
    }
    std::optional<double> positive_number(std::string_view name) const {
        const auto value = file_.optional_number(key(name));
        if (value && !(*value > 0.0 && *value < 1e300))
            fail(ErrorCode::kCorruptData, "{}: metadata '{}' is {}, expected a positive number",
                 file_.source, key(name), *value);
        return value;
    }
    const io::GgufFile& file() const { return file_; }

  private:
    int checked_size(std::string_view name, std::int64_t value) const {
        if (value < 1 || value > INT_MAX)
            fail(ErrorCode::kCorruptData, "{}: metadata '{}' is {}, expected a positive integer",
                 file_.source, key(name), value);
        return static_cast<int>(value);
    }
    const io::GgufFile& file_;
    std::string prefix_;
};

const io::TensorView* find_tensor(const io::GgufFile& file, std::string_view name) {
    for (const io::TensorView& t : file.tensors)
        if (t.name == name) return &t;
    return nullptr;
}

RopeConfig read_rope(const Keys& keys, const ModelConfig& config) {
    const io::GgufFile& file = keys.file();
    RopeConfig rope;
    rope.theta = keys.positive_number("rope.freq_base").value_or(10000.0);
    rope.rotary_dim = keys.optional_size("rope.dimension_count").value_or(config.head_dim);
    if (rope.rotary_dim % 2 != 0 || rope.rotary_dim > config.head_dim)
        fail(ErrorCode::kCorruptData,
             "{}: metadata '{}' is {}, expected an even number up to the head size {}", file.source,
             keys.key("rope.dimension_count"), rope.rotary_dim, config.head_dim);
    const std::string scaling =
        file.optional_string(keys.key("rope.scaling.type")).value_or("none");
    if (scaling == "linear" || scaling == "yarn") {
        rope.type = scaling == "linear" ? RopeType::kLinear : RopeType::kYarn;
        rope.factor = keys.positive_number("rope.scaling.factor").value_or(1.0);
        if (rope.type == RopeType::kYarn) {
            rope.original_max_position_embeddings =
                keys.optional_size("rope.scaling.original_context_length")
                    .value_or(config.n_positions);
            rope.beta_fast = file.optional_number(keys.key("rope.scaling.yarn_beta_fast"));
            rope.beta_slow = file.optional_number(keys.key("rope.scaling.yarn_beta_slow"));
        }
    } else if (scaling != "none") {
        fail(ErrorCode::kUnsupported,
             "{}: metadata '{}' is '{}', which is not supported (supported: none, linear, yarn)",
             file.source, keys.key("rope.scaling.type"), scaling);
    }
    if (const io::TensorView* freqs = find_tensor(file, "rope_freqs.weight")) {
        const auto expected = static_cast<std::int64_t>(rope.rotary_dim / 2);
        if (freqs->dtype != DType::kF32 || freqs->shape != std::vector<std::int64_t>{expected})
            fail(ErrorCode::kCorruptData,
                 "{}: tensor 'rope_freqs.weight' is {} of shape {}, expected f32 of shape [{}]",
                 file.source, to_string(freqs->dtype), io::format_shape(freqs->shape), expected);
        rope.frequency_divisors.resize(static_cast<std::size_t>(expected));
        std::memcpy(rope.frequency_divisors.data(), freqs->data.data(), freqs->data.size());
        for (const float divisor : rope.frequency_divisors)
            if (!(divisor > 0.0f))
                fail(ErrorCode::kCorruptData,
                     "{}: tensor 'rope_freqs.weight' holds {}, expected positive factors",
                     file.source, divisor);
    }
    return rope;
}

// GGUF row 2i + j of a head of d rows is Hugging Face row j * d / 2 + i (convert_hf_to_gguf's
// permutation for rotating adjacent pairs): put the rows back so that halves rotate.
std::vector<std::byte> unpermute_rows(const io::TensorView& tensor, int heads) {
    const auto rows = static_cast<std::size_t>(tensor.shape.at(0));
    const std::size_t row = tensor.data.size() / rows;
    if (heads <= 0 || rows % static_cast<std::size_t>(heads) != 0 ||
        (rows / static_cast<std::size_t>(heads)) % 2 != 0)
        fail(ErrorCode::kCorruptData,
             "{}: tensor '{}': {} rows do not split into {} heads of pairs", tensor.file,
             tensor.name, rows, heads);
    const std::size_t d = rows / static_cast<std::size_t>(heads);
    std::vector<std::byte> out(tensor.data.size());
    for (std::size_t h = 0; h < static_cast<std::size_t>(heads); ++h)
        for (std::size_t r = 0; r < d; ++r) {
            const std::size_t source = h * d + 2 * (r % (d / 2)) + r / (d / 2);
            std::memcpy(out.data() + (h * d + r) * row, tensor.data.data() + source * row, row);
        }
    return out;
}

}  // namespace

std::string supported_gguf_architectures() {
    std::string list;
    for (const auto arch : kArchitectures) list += (list.empty() ? "" : ", ") + std::string(arch);
    return list;
}

ModelConfig gguf_model_config(const io::GgufFile& file) {
    const std::string arch = file.string("general.architecture");
    if (std::find(kArchitectures.begin(), kArchitectures.end(), arch) == kArchitectures.end())
        fail(ErrorCode::kUnsupported,
             "{}: general.architecture '{}' is not supported (supported: {})", file.source, arch,
             supported_gguf_architectures());
    const Keys keys(file, arch);
    ModelConfig c;
    c.model_type = arch;
    c.naming = WeightNaming::kGguf;
    c.n_layer = keys.size("block_count");
    c.n_positions = keys.size("context_length");
    c.n_embd = keys.size("embedding_length");
    c.n_inner = keys.size("feed_forward_length");
    c.n_head = keys.size("attention.head_count");
    c.n_kv_head = keys.optional_size("attention.head_count_kv").value_or(c.n_head);
    if (c.n_head % c.n_kv_head != 0)
        fail(ErrorCode::kCorruptData, "{}: {} heads do not split into groups of {} KV heads",
             file.source, c.n_head, c.n_kv_head);
    const auto key_length = keys.optional_size("attention.key_length");
    const auto value_length = keys.optional_size("attention.value_length");
    if (key_length && value_length && *key_length != *value_length)
        fail(ErrorCode::kUnsupported, "{}: key length {} differs from value length {}", file.source,
             *key_length, *value_length);
    if (key_length) {
        c.head_dim = *key_length;
    } else if (c.n_embd % c.n_head != 0) {
        fail(ErrorCode::kCorruptData, "{}: embedding length {} is not divisible by {} heads",
             file.source, c.n_embd, c.n_head);
    } else {
        c.head_dim = c.n_embd / c.n_head;
    }
    const io::TensorView* embed = find_tensor(file, "token_embd.weight");
    if (embed == nullptr)
        fail(ErrorCode::kNotFound, "{}: tensor 'token_embd.weight' is missing", file.source);
    if (embed->shape.size() != 2 || embed->shape[0] < 1 || embed->shape[0] > INT_MAX)
        fail(ErrorCode::kCorruptData,
             "{}: tensor 'token_embd.weight' has shape {}, expected "
             "[vocabulary, {}]",
             file.source, io::format_shape(embed->shape), c.n_embd);
    c.vocab_size = static_cast<int>(embed->shape[0]);
    c.tie_word_embeddings = find_tensor(file, "output.weight") == nullptr;
    c.layer_windows.assign(c.n_layer, 0);  // llama.cpp's architectures attend to every position

    if (arch == "gpt2") {
        c.norm = NormKind::kLayerNorm;
        c.activation = Activation::kGeluNew;
        const double eps = keys.file().number(keys.key("attention.layer_norm_epsilon"));
        c.layer_norm_epsilon = static_cast<float>(eps);
        c.qkv_bias = c.o_bias = c.mlp_bias = true;
    } else {
        c.norm = NormKind::kRmsNorm;
        c.activation = Activation::kSilu;
        c.layer_norm_epsilon =
            static_cast<float>(file.number(keys.key("attention.layer_norm_rms_epsilon")));
        c.gated_mlp = true;
        // Biases and per-head norms as the file holds them (qwen2's q/k/v biases, qwen3's norms).
        c.qkv_bias = find_tensor(file, "blk.0.attn_q.bias") != nullptr;
        c.o_bias = find_tensor(file, "blk.0.attn_output.bias") != nullptr;
        c.mlp_bias = find_tensor(file, "blk.0.ffn_up.bias") != nullptr;
        c.qk_norm = find_tensor(file, "blk.0.attn_q_norm.weight") != nullptr;
        c.rope = read_rope(keys, c);
    }
    if (!(c.layer_norm_epsilon >= 0.0f))
        fail(ErrorCode::kCorruptData, "{}: the norm epsilon {} is not a non-negative number",
             file.source, c.layer_norm_epsilon);
    auto token = [&](std::string_view name) -> std::optional<int> {
        const auto id = file.optional_integer(fmt::format("tokenizer.ggml.{}", name));
        if (!id) return std::nullopt;
        if (*id < 0 || *id >= c.vocab_size)
            fail(ErrorCode::kCorruptData,
                 "{}: metadata 'tokenizer.ggml.{}' is {}, outside the "
                 "vocabulary of {}",
                 file.source, name, *id, c.vocab_size);
        return static_cast<int>(*id);
    };
    c.bos_token_id = token("bos_token_id");
    c.eos_token_id = token("eos_token_id");
    c.pad_token_id = token("padding_token_id");
    if (c.eos_token_id) c.eos_token_ids = {*c.eos_token_id};
    return c;
}

GenerationDefaults gguf_generation_defaults(const ModelConfig& config) {
    GenerationDefaults defaults;
    defaults.eos_token_ids = config.eos_token_ids;
    defaults.bos_token_id = config.bos_token_id;
    defaults.pad_token_id = config.pad_token_id;
    return defaults;
}

io::WeightStore gguf_weights(io::GgufMapped mapped, const ModelConfig& config) {
    io::WeightStore store(mapped.file.path());
    std::vector<io::TensorView> in_place;
    std::vector<std::pair<std::vector<std::byte>, io::TensorView>> rewritten;
    const bool permuted = config.model_type == "llama";
    for (io::TensorView& tensor : mapped.gguf.tensors) {
        const std::string& name = tensor.name;
        const bool is_q = name.ends_with(".attn_q.weight"), is_k = name.ends_with(".attn_k.weight");
        if (permuted && (is_q || is_k) && tensor.shape.size() == 2) {
            auto bytes = unpermute_rows(tensor, is_q ? config.n_head : config.n_kv_head);
            rewritten.emplace_back(std::move(bytes), tensor);
        } else {
            in_place.push_back(tensor);
        }
    }
    store.add_file(std::move(mapped.file), std::move(in_place));
    for (auto& [bytes, tensor] : rewritten) store.add_owned(std::move(bytes), std::move(tensor));
    return store;
}

std::uint64_t gguf_memory_estimate(const std::filesystem::path& file,
                                   backend::WeightFormat format) {
    const io::GgufMapped mapped = io::open_gguf(file);
    std::uint64_t total = 0;
    for (const io::TensorView& t : mapped.gguf.tensors) {
        const auto count = static_cast<std::uint64_t>(t.numel());
        // Per 32 weights: q8 34 bytes, q4 18, 2 more with block biases (Q5_1, Q4_K, Q5_K).
        const bool biased = has_block_minimums(t.dtype);
        const std::uint64_t q8 = count / 32 * (biased ? 36 : 34);
        const std::uint64_t q4 = count / 32 * (t.dtype == DType::kQ4_K ? 20 : 18);
        switch (format) {
            case backend::WeightFormat::kAuto:
                if (t.dtype == DType::kQ4_0 || t.dtype == DType::kQ4_K)
                    total += q4;
                else if (is_quantized(t.dtype))
                    total += q8;
                else
                    total += t.data.size();
                break;
            case backend::WeightFormat::kF32:
                total += 4 * count;
                break;
            case backend::WeightFormat::kF16:
            case backend::WeightFormat::kBF16:
                total += 2 * count;
                break;
            case backend::WeightFormat::kQ8:
                total += q8;
                break;
            case backend::WeightFormat::kQ4:
                total += q4;
                break;
        }
    }
    return total;
}

}  // namespace llmserve::model
