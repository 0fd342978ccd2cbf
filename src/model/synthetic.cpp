#include "model/synthetic.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "common/error.h"
#include "io/mapped_file.h"

namespace llmserve::model {

ModelConfig published_shape(std::string_view name) {
    struct Shape {
        std::string_view name;
        int n_layer, n_embd, n_head;
    };
    constexpr Shape kShapes[] = {{"gpt2", 12, 768, 12},
                                 {"gpt2-medium", 24, 1024, 16},
                                 {"gpt2-large", 36, 1280, 20},
                                 {"gpt2-xl", 48, 1600, 25}};
    for (const Shape& shape : kShapes) {
        if (shape.name != name) continue;
        ModelConfig config;
        config.vocab_size = 50257;
        config.n_positions = 1024;
        config.n_layer = shape.n_layer;
        config.n_embd = shape.n_embd;
        config.n_head = shape.n_head;
        config.n_inner = 4 * shape.n_embd;
        config.bos_token_id = config.eos_token_id = 50256;
        config.eos_token_ids = {50256};
        config.model_type = "gpt2";
        return config;
    }
    fail_param("shape",
               "unknown model shape '{}'; expected gpt2, gpt2-medium, gpt2-large or gpt2-xl", name);
}

namespace {

struct TensorSpec {
    std::string name;
    std::vector<std::int64_t> shape;
    float constant;  // NaN: random
};

std::vector<TensorSpec> gpt2_tensors(const ModelConfig& c) {
    const std::int64_t C = c.n_embd, I = c.n_inner;
    const float random = std::nanf("");
    std::vector<TensorSpec> specs = {{"wte.weight", {c.vocab_size, C}, random},
                                     {"wpe.weight", {c.n_positions, C}, random}};
    for (int i = 0; i < c.n_layer; ++i) {
        const std::string p = "h." + std::to_string(i) + ".";
        specs.push_back({p + "ln_1.weight", {C}, 1.0f});
        specs.push_back({p + "ln_1.bias", {C}, 0.0f});
        specs.push_back({p + "attn.c_attn.weight", {C, 3 * C}, random});
        specs.push_back({p + "attn.c_attn.bias", {3 * C}, 0.0f});
        specs.push_back({p + "attn.c_proj.weight", {C, C}, random});
        specs.push_back({p + "attn.c_proj.bias", {C}, 0.0f});
        specs.push_back({p + "ln_2.weight", {C}, 1.0f});
        specs.push_back({p + "ln_2.bias", {C}, 0.0f});
        specs.push_back({p + "mlp.c_fc.weight", {C, I}, random});
        specs.push_back({p + "mlp.c_fc.bias", {I}, 0.0f});
        specs.push_back({p + "mlp.c_proj.weight", {I, C}, random});
        specs.push_back({p + "mlp.c_proj.bias", {C}, 0.0f});
    }
    specs.push_back({"ln_f.weight", {C}, 1.0f});
    specs.push_back({"ln_f.bias", {C}, 0.0f});
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

}  // namespace

std::shared_ptr<const Gpt2Model> synthetic_model(const ModelConfig& config, DType dtype,
                                                 const LoadOptions& options, std::string name) {
    const auto specs = gpt2_tensors(config);
    std::size_t total = 0;
    for (const auto& spec : specs) {
        std::size_t count = 1;
        for (auto d : spec.shape) count *= static_cast<std::size_t>(d);
        total += count * dtype_size(dtype);
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
        std::size_t count = 1;
        for (auto d : spec.shape) count *= static_cast<std::size_t>(d);
        for (std::size_t i = 0; i < count; ++i) {
            float value = spec.constant;
            if (std::isnan(value)) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                value =
                    (static_cast<float>(state >> 40) / static_cast<float>(1 << 24) * 2.0f - 1.0f) *
                    half_width;
            }
            if (dtype == DType::kF32) {
                std::memcpy(out + offset + i * 4, &value, 4);
            } else {
                const std::uint16_t half = f32_to_half_bits(value, dtype);
                std::memcpy(out + offset + i * 2, &half, 2);
            }
        }
        ranges.emplace_back(offset, count * dtype_size(dtype));
        offset += count * dtype_size(dtype);
    }
    munmap(raw, total);
    io::MappedFile file = io::MappedFile::open("/proc/self/fd/" + std::to_string(fd));
    close(fd);  // the mapping keeps the memory alive
    std::vector<io::TensorView> views;
    for (std::size_t i = 0; i < specs.size(); ++i) {
        io::TensorView view;
        view.name = specs[i].name;
        view.dtype = dtype;
        view.shape = specs[i].shape;
        view.data = file.bytes().subspan(ranges[i].first, ranges[i].second);
        view.file = "<synthetic " + name + ">";
        views.push_back(std::move(view));
    }
    io::WeightStore store{std::filesystem::path("<synthetic>")};
    store.add_file(std::move(file), std::move(views));
    return Gpt2Model::from_weights(config, GenerationDefaults{}, std::move(store), std::move(name),
                                   options);
}

}  // namespace llmserve::model
