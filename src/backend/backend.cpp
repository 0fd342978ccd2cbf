// What every backend shares: the format names and the shape checks of the interface.
#include "backend/backend.h"

#include "common/error.h"

namespace llmserve::backend {
namespace {

class HeapHostBuffer final : public HostBuffer {
  public:
    // Default-initialised: the pages stay untouched (not resident) until a result lands there.
    explicit HeapHostBuffer(std::size_t floats) : data_(new float[floats]), size_(floats) {}
    float* data() override { return data_.get(); }
    std::size_t size() const override { return size_; }

  private:
    std::unique_ptr<float[]> data_;
    std::size_t size_;
};

}  // namespace

std::unique_ptr<HostBuffer> Backend::allocate_host(std::size_t floats) {
    return std::make_unique<HeapHostBuffer>(floats);
}

KvFormat parse_kv_format(std::string_view text) {
    if (text == "f32") return KvFormat::kF32;
    if (text == "f16") return KvFormat::kF16;
    fail_param("kv_cache_dtype", "KV cache dtype must be f32 or f16; got '{}'", text);
}

std::string_view to_string(KvFormat format) {
    return format == KvFormat::kF16 ? "f16" : "f32";
}

std::size_t element_bytes(KvFormat format) {
    return format == KvFormat::kF16 ? sizeof(std::uint16_t) : sizeof(float);
}

WeightFormat parse_weight_format(std::string_view text) {
    if (text == "auto") return WeightFormat::kAuto;
    if (text == "f32") return WeightFormat::kF32;
    if (text == "f16") return WeightFormat::kF16;
    if (text == "bf16") return WeightFormat::kBF16;
    if (text == "q8") return WeightFormat::kQ8;
    if (text == "q4") return WeightFormat::kQ4;
    fail_param("dtype", "dtype must be one of auto, f32, f16, bf16, q8, q4; got '{}'", text);
}

std::string_view to_string(WeightFormat format) {
    switch (format) {
        case WeightFormat::kAuto:
            return "auto";
        case WeightFormat::kF32:
            return "f32";
        case WeightFormat::kF16:
            return "f16";
        case WeightFormat::kBF16:
            return "bf16";
        case WeightFormat::kQ8:
            return "q8";
        case WeightFormat::kQ4:
            return "q4";
    }
    return "?";
}

void check_linear(MatrixView x, int in_features, int out_features, const LinearEpilogue& epilogue,
                  MatrixView y) {
    if (x.cols != in_features || y.cols != out_features || y.rows != x.rows)
        fail(ErrorCode::kInternal, "linear: x [{}, {}] · W [{}, {}] -> y [{}, {}] do not fit",
             x.rows, x.cols, in_features, out_features, y.rows, y.cols);
    if (epilogue.bias != nullptr && epilogue.bias->size() < static_cast<std::size_t>(out_features))
        fail(ErrorCode::kInternal, "linear: a bias of {} floats for {} outputs",
             epilogue.bias->size(), out_features);
    if (epilogue.activation && epilogue.accumulate)
        fail(ErrorCode::kInternal, "linear: an activation cannot be combined with accumulate");
    if (x.rows > 0 && x.data == y.data) fail(ErrorCode::kInternal, "linear: y aliases x");
}

void check_attention(MatrixView qkv, const AttentionParams& p, int kv_dim, MatrixView out) {
    const bool heads_fit = p.n_head > 0 && p.n_kv_head > 0 && p.head_dim > 0 &&
                           p.n_head % p.n_kv_head == 0 && p.window >= 0;
    if (!heads_fit || kv_dim != p.n_kv_head * p.head_dim ||
        qkv.cols != (p.n_head + 2 * p.n_kv_head) * p.head_dim ||
        out.cols != p.n_head * p.head_dim || qkv.rows != out.rows)
        fail(ErrorCode::kInternal,
             "attention: qkv [{}, {}], out [{}, {}], {} heads, {} KV heads of {} dims, window {} "
             "and a KV cache of {} floats per token do not fit",
             qkv.rows, qkv.cols, out.rows, out.cols, p.n_head, p.n_kv_head, p.head_dim, p.window,
             kv_dim);
    const auto head_dim = static_cast<std::size_t>(p.head_dim);
    if ((p.q_norm != nullptr) != (p.k_norm != nullptr) ||
        (p.q_norm != nullptr && (p.q_norm->size() < head_dim || p.k_norm->size() < head_dim)))
        fail(ErrorCode::kInternal, "attention: q/k norm weights must both be given, of {} floats",
             p.head_dim);
    const RotaryParams& r = p.rotary;
    if (r.inv_freq != nullptr &&
        (r.rotary_dim <= 0 || r.rotary_dim % 2 != 0 || r.rotary_dim > p.head_dim ||
         r.inv_freq->size() < static_cast<std::size_t>(r.rotary_dim / 2)))
        fail(ErrorCode::kInternal,
             "attention: rotary_dim {} (inv_freq of {} floats) does not fit head_dim {}",
             r.rotary_dim, r.inv_freq->size(), p.head_dim);
}

}  // namespace llmserve::backend
