// CPU backend: OpenBLAS for the matrix products, our thread pool for everything else.
// Weights are kept as float32 (aliasing the mapped checkpoint when it already stores aligned f32).
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include "backend/backend.h"
#include "common/error.h"
#include "common/thread_pool.h"

namespace llmserve::backend {
namespace {

struct AlignedDelete {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t(64)); }
};
using AlignedFloats = std::unique_ptr<float[], AlignedDelete>;

AlignedFloats allocate_aligned(std::size_t floats) {
    auto* p = static_cast<float*>(
        ::operator new[](std::max<std::size_t>(floats, 1) * sizeof(float), std::align_val_t(64)));
    return AlignedFloats(p);
}

class CpuBuffer final : public DeviceBuffer {
  public:
    explicit CpuBuffer(std::size_t floats) : data_(allocate_aligned(floats)), size_(floats) {
        std::fill_n(data_.get(), floats, 0.0f);
    }
    float* data() override { return data_.get(); }
    const float* data() const override { return data_.get(); }
    std::size_t size() const override { return size_; }

  private:
    AlignedFloats data_;
    std::size_t size_;
};

// A float32 matrix: rows x cols as stored, either aliasing the checkpoint or owned.
class CpuWeight final : public Weight {
  public:
    CpuWeight(const io::TensorView& tensor, MatrixLayout layout) : layout_(layout) {
        rows_ = static_cast<int>(tensor.shape[0]);
        cols_ = static_cast<int>(tensor.shape[1]);
        const auto* bytes = tensor.data.data();
        if (tensor.dtype == DType::kF32 &&
            reinterpret_cast<std::uintptr_t>(bytes) % alignof(float) == 0) {
            data_ = reinterpret_cast<const float*>(bytes);
        } else {
            owned_ = allocate_aligned(tensor.data.size() / dtype_size(tensor.dtype));
            convert_to_f32(tensor.dtype, bytes, static_cast<std::size_t>(rows_) * cols_,
                           owned_.get());
            data_ = owned_.get();
        }
    }
    int in_features() const override { return layout_ == MatrixLayout::kInOut ? rows_ : cols_; }
    int out_features() const override { return layout_ == MatrixLayout::kInOut ? cols_ : rows_; }
    std::size_t resident_bytes() const override {
        return owned_ ? static_cast<std::size_t>(rows_) * cols_ * sizeof(float) : 0;
    }

    MatrixLayout layout() const { return layout_; }
    const float* data() const { return data_; }
    int stored_cols() const { return cols_; }

  private:
    MatrixLayout layout_;
    int rows_ = 0;
    int cols_ = 0;
    const float* data_ = nullptr;
    AlignedFloats owned_;
};

class CpuKvStorage final : public KvStorage {
  public:
    CpuKvStorage(int layers, int blocks, int block_tokens, int n_embd)
        : layers_(layers),
          blocks_(blocks),
          block_tokens_(block_tokens),
          n_embd_(n_embd),
          floats_(static_cast<std::size_t>(layers) * 2 * blocks * block_tokens * n_embd),
          data_(allocate_aligned(floats_)) {}

    int num_blocks() const override { return blocks_; }
    int block_tokens() const override { return block_tokens_; }
    std::size_t bytes() const override { return floats_ * sizeof(float); }
    void copy_block(int from, int to) override {
        for (int layer = 0; layer < layers_; ++layer)
            for (int kind = 0; kind < 2; ++kind)
                std::memcpy(slot(layer, kind, to, 0), slot(layer, kind, from, 0),
                            block_floats() * sizeof(float));
    }

    // Start of the n_embd floats of token `offset` in `block` (kind 0 = keys, 1 = values).
    float* slot(int layer, int kind, int block, int offset) {
        const std::size_t index =
            ((static_cast<std::size_t>(layer) * 2 + kind) * blocks_ + block) * block_tokens_ +
            offset;
        return data_.get() + index * n_embd_;
    }

  private:
    std::size_t block_floats() const { return static_cast<std::size_t>(block_tokens_) * n_embd_; }
    int layers_, blocks_, block_tokens_, n_embd_;
    std::size_t floats_;
    AlignedFloats data_;
};

const CpuWeight& as_cpu(const Weight& w) {
    return static_cast<const CpuWeight&>(w);
}

float apply_activation(Activation kind, float x) {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    switch (kind) {
        case Activation::kGeluNew:
            return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
        case Activation::kGeluFast:
            return 0.5f * x * (1.0f + std::tanh(x * kSqrt2OverPi * (1.0f + 0.044715f * x * x)));
        case Activation::kGelu:
            return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
        case Activation::kRelu:
            return x > 0.0f ? x : 0.0f;
        case Activation::kSilu:
            return x / (1.0f + std::exp(-x));
    }
    return x;
}

class CpuBackend final : public Backend {
  public:
    explicit CpuBackend(int threads) : pool_(threads) { openblas_set_num_threads(pool_.size()); }

    std::string name() const override { return "cpu"; }
    int threads() const override { return pool_.size(); }

    std::unique_ptr<DeviceBuffer> allocate(std::size_t floats) override {
        return std::make_unique<CpuBuffer>(floats);
    }
    std::unique_ptr<KvStorage> allocate_kv(int layers, int blocks, int block_tokens,
                                           int n_embd) override {
        return std::make_unique<CpuKvStorage>(layers, blocks, block_tokens, n_embd);
    }

    std::unique_ptr<Weight> upload_matrix(const io::TensorView& tensor, MatrixLayout layout,
                                          WeightFormat format) override {
        if (tensor.shape.size() != 2)
            fail(ErrorCode::kInternal, "{}: tensor '{}' is not a matrix", tensor.file, tensor.name);
        if (format != WeightFormat::kAuto && format != WeightFormat::kF32)
            fail(ErrorCode::kUnsupported,
                 "the cpu backend computes in f32; weight format '{}' is not available",
                 to_string(format));
        return std::make_unique<CpuWeight>(tensor, layout);
    }

    std::unique_ptr<DeviceBuffer> upload_vector(const io::TensorView& tensor) override {
        const auto count = static_cast<std::size_t>(tensor.numel());
        auto buffer = std::make_unique<CpuBuffer>(count);
        convert_to_f32(tensor.dtype, tensor.data.data(), count, buffer->data());
        return buffer;
    }

    void embedding(const Weight& table, std::span<const std::int32_t> ids,
                   MatrixView out) override {
        const auto& w = as_cpu(table);
        const int cols = w.stored_cols();
        for (std::size_t r = 0; r < ids.size(); ++r)
            std::memcpy(out.row(static_cast<int>(r)),
                        w.data() + static_cast<std::size_t>(ids[r]) * cols, cols * sizeof(float));
    }

    void linear(MatrixView x, const Weight& weight, const DeviceBuffer* bias,
                MatrixView y) override {
        const auto& w = as_cpu(weight);
        const int m = x.rows, k = w.in_features(), n = w.out_features();
        const bool transposed = w.layout() == MatrixLayout::kOutIn;
        if (m == 1) {
            // y = Wᵀx for [in, out] storage, W x for [out, in].
            cblas_sgemv(CblasRowMajor, transposed ? CblasNoTrans : CblasTrans, transposed ? n : k,
                        transposed ? k : n, 1.0f, w.data(), w.stored_cols(), x.data, 1, 0.0f,
                        y.data, 1);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, transposed ? CblasTrans : CblasNoTrans, m, n,
                        k, 1.0f, x.data, x.cols, w.data(), w.stored_cols(), 0.0f, y.data, y.cols);
        }
        if (bias != nullptr) {
            const float* b = bias->data();
            for (int r = 0; r < m; ++r) {
                float* row = y.row(r);
                for (int c = 0; c < n; ++c) row[c] += b[c];
            }
        }
    }

    void layer_norm(MatrixView x, const DeviceBuffer& gamma, const DeviceBuffer& beta, float eps,
                    MatrixView y) override {
        const float* g = gamma.data();
        const float* b = beta.data();
        pool_.parallel_for(x.rows, 16, [&](std::size_t begin, std::size_t end) {
            for (std::size_t r = begin; r < end; ++r) {
                const float* in = x.row(static_cast<int>(r));
                float* out = y.row(static_cast<int>(r));
                double sum = 0.0;
                for (int c = 0; c < x.cols; ++c) sum += in[c];
                const float mean = static_cast<float>(sum / x.cols);
                double sq = 0.0;
                for (int c = 0; c < x.cols; ++c) sq += (in[c] - mean) * (in[c] - mean);
                const float inv_std = 1.0f / std::sqrt(static_cast<float>(sq / x.cols) + eps);
                for (int c = 0; c < x.cols; ++c) out[c] = (in[c] - mean) * inv_std * g[c] + b[c];
            }
        });
    }

    void activation(Activation kind, MatrixView x) override {
        const std::size_t total = static_cast<std::size_t>(x.rows) * x.cols;
        pool_.parallel_for(total, 4096, [&](std::size_t begin, std::size_t end) {
            for (std::size_t i = begin; i < end; ++i) x.data[i] = apply_activation(kind, x.data[i]);
        });
    }

    void add(MatrixView x, MatrixView y) override {
        const std::size_t total = static_cast<std::size_t>(x.rows) * x.cols;
        for (std::size_t i = 0; i < total; ++i) x.data[i] += y.data[i];
    }

    void attention(MatrixView qkv, const AttentionBatch& batch, KvStorage& storage, int layer,
                   const AttentionParams& params, MatrixView out) override {
        auto& kv = static_cast<CpuKvStorage&>(storage);
        const int n_embd = out.cols;
        const int head_dim = n_embd / params.n_head;
        const int block_tokens = batch.block_tokens;
        auto block_of = [&](int row, int position) {
            return batch.block_tables[batch.row_sequence[row]][position / block_tokens];
        };
        for (int r = 0; r < qkv.rows; ++r) {
            const int position = batch.positions[r];
            const int block = block_of(r, position);
            std::memcpy(kv.slot(layer, 0, block, position % block_tokens), qkv.row(r) + n_embd,
                        n_embd * sizeof(float));
            std::memcpy(kv.slot(layer, 1, block, position % block_tokens), qkv.row(r) + 2 * n_embd,
                        n_embd * sizeof(float));
        }
        const std::size_t tasks = static_cast<std::size_t>(qkv.rows) * params.n_head;
        pool_.parallel_for(tasks, 1, [&](std::size_t begin, std::size_t end) {
            std::vector<float> scores;
            for (std::size_t task = begin; task < end; ++task) {
                const int r = static_cast<int>(task / params.n_head);
                const int head = static_cast<int>(task % params.n_head);
                const int length = batch.positions[r] + 1;
                const float* q = qkv.row(r) + head * head_dim;
                scores.resize(length);
                float max_score = -INFINITY;
                for (int t = 0; t < length; ++t) {
                    const float* k =
                        kv.slot(layer, 0, block_of(r, t), t % block_tokens) + head * head_dim;
                    float dot = 0.0f;
                    for (int d = 0; d < head_dim; ++d) dot += q[d] * k[d];
                    scores[t] = dot * params.scale;
                    max_score = std::max(max_score, scores[t]);
                }
                float sum = 0.0f;
                for (int t = 0; t < length; ++t) {
                    scores[t] = std::exp(scores[t] - max_score);
                    sum += scores[t];
                }
                float* o = out.row(r) + head * head_dim;
                std::fill_n(o, head_dim, 0.0f);
                for (int t = 0; t < length; ++t) {
                    const float weight = scores[t] / sum;
                    const float* v =
                        kv.slot(layer, 1, block_of(r, t), t % block_tokens) + head * head_dim;
                    for (int d = 0; d < head_dim; ++d) o[d] += weight * v[d];
                }
            }
        });
    }

    void gather_rows(MatrixView x, std::span<const int> rows, MatrixView out) override {
        for (std::size_t i = 0; i < rows.size(); ++i)
            std::memcpy(out.row(static_cast<int>(i)), x.row(rows[i]), x.cols * sizeof(float));
    }

    void copy_to_host(MatrixView x, float* host) override {
        std::memcpy(host, x.data, static_cast<std::size_t>(x.rows) * x.cols * sizeof(float));
    }

  private:
    ThreadPool pool_;
};

}  // namespace

WeightFormat parse_weight_format(std::string_view text) {
    if (text == "auto") return WeightFormat::kAuto;
    if (text == "f32") return WeightFormat::kF32;
    if (text == "f16") return WeightFormat::kF16;
    if (text == "bf16") return WeightFormat::kBF16;
    fail_param("dtype", "dtype must be one of auto, f32, f16, bf16; got '{}'", text);
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
    }
    return "?";
}

std::unique_ptr<Backend> make_cpu_backend(int threads) {
    return std::make_unique<CpuBackend>(threads);
}

}  // namespace llmserve::backend
