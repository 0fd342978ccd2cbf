// Host side of the CUDA backend: device memory, uploads, cuBLAS GEMMs and kernel launches, all on
// one stream per backend so that every operation runs in the order the model issues it. Only
// copy_to_host (and the one-time weight uploads) wait for the device.
#include "backend/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <mutex>
#include <utility>
#include <vector>

#include "backend/cuda/attention_batch.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/paged_layout.h"
#include "common/error.h"

namespace llmserve::backend {
namespace {

using cuda::KvLayout;
using cuda::PagedRows;

double gib(std::size_t bytes) {
    return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0);
}

std::string describe_status(cudaError_t status) {
    return fmt::format("{} ({})", cudaGetErrorString(status), cudaGetErrorName(status));
}

void check(cudaError_t status, int device, std::string_view what) {
    if (status == cudaSuccess) return;
    cudaGetLastError();  // clear it so later launch checks do not report it again
    fail(status == cudaErrorMemoryAllocation ? ErrorCode::kResourceExhausted : ErrorCode::kInternal,
         "cuda:{}: {} failed: {}", device, what, describe_status(status));
}

void check_cublas(cublasStatus_t status, int device, std::string_view what) {
    if (status == CUBLAS_STATUS_SUCCESS) return;
    fail(
        status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::kResourceExhausted : ErrorCode::kInternal,
        "cuda:{}: {} failed: {}", device, what, cublasGetStatusString(status));
}

// Reports a kernel that could not start (bad configuration, no code for this GPU).
void check_launch(int device, std::string_view kernel) {
    const cudaError_t status = cudaGetLastError();
    if (status == cudaSuccess) return;
    fail(ErrorCode::kInternal,
         "cuda:{}: kernel '{}' failed to launch: {} (this binary holds code for CUDA "
         "architectures {})",
         device, kernel, describe_status(status), LLMSERVE_CUDA_ARCHITECTURES);
}

cudaDataType_t cuda_type(DType type) {
    switch (type) {
        case DType::kF32:
            return CUDA_R_32F;
        case DType::kF16:
            return CUDA_R_16F;
        case DType::kBF16:
            return CUDA_R_16BF;
    }
    return CUDA_R_32F;
}

// The stream, the cuBLAS handle and the lock shared by a backend and everything it allocated, so
// that buffers and caches may outlive the Backend object safely.
class CudaContext {
  public:
    explicit CudaContext(int device) : device_(device) {
        activate();
        check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), device,
              "creating a stream");
        const cublasStatus_t status = cublasCreate(&cublas_);
        if (status != CUBLAS_STATUS_SUCCESS) {
            cudaStreamDestroy(stream_);
            check_cublas(status, device, "cublasCreate");
        }
        check_cublas(cublasSetStream(cublas_, stream_), device, "cublasSetStream");
    }
    ~CudaContext() {
        cudaSetDevice(device_);
        cublasDestroy(cublas_);
        cudaStreamDestroy(stream_);
    }
    CudaContext(const CudaContext&) = delete;
    CudaContext& operator=(const CudaContext&) = delete;

    int device() const { return device_; }
    cudaStream_t stream() const { return stream_; }
    cublasHandle_t cublas() const { return cublas_; }
    // The CUDA current device is per host thread; every entry point calls this first.
    void activate() const { check(cudaSetDevice(device_), device_, "cudaSetDevice"); }
    // Waits for everything queued so far; surfaces errors of earlier kernels.
    void synchronize(std::string_view what) const {
        check(cudaStreamSynchronize(stream_), device_, what);
    }
    // Serialises the host side of operations (scratch buffers, the packed-batch cache) when
    // several threads share one backend.
    std::mutex& mutex() { return mutex_; }

  private:
    int device_;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t cublas_ = nullptr;
    std::mutex mutex_;
};

// Owned device memory; `what` names the allocation in the out-of-memory error.
class DeviceMemory {
  public:
    DeviceMemory() = default;
    DeviceMemory(int device, std::size_t bytes, std::string_view what)
        : device_(device), bytes_(bytes) {
        const cudaError_t status = cudaMalloc(&data_, std::max<std::size_t>(bytes, 1));
        if (status == cudaSuccess) return;
        cudaGetLastError();
        data_ = nullptr;
        std::size_t free_bytes = 0, total_bytes = 0;
        cudaMemGetInfo(&free_bytes, &total_bytes);
        fail(status == cudaErrorMemoryAllocation ? ErrorCode::kResourceExhausted
                                                 : ErrorCode::kInternal,
             "cuda:{}: cannot allocate {:.3f} GiB of device memory for {} ({:.3f} GiB free of "
             "{:.3f} GiB): {}",
             device, gib(bytes), what, gib(free_bytes), gib(total_bytes), describe_status(status));
    }
    ~DeviceMemory() { release(); }
    DeviceMemory(DeviceMemory&& other) noexcept
        : device_(other.device_),
          bytes_(std::exchange(other.bytes_, 0)),
          data_(std::exchange(other.data_, nullptr)) {}
    DeviceMemory& operator=(DeviceMemory&& other) noexcept {
        if (this != &other) {
            release();
            device_ = other.device_;
            bytes_ = std::exchange(other.bytes_, 0);
            data_ = std::exchange(other.data_, nullptr);
        }
        return *this;
    }

    void* get() const { return data_; }
    std::size_t bytes() const { return bytes_; }

  private:
    void release() {
        if (data_ == nullptr) return;
        cudaSetDevice(device_);
        cudaFree(data_);  // a destructor cannot report a failure; the memory is gone either way
        data_ = nullptr;
    }
    int device_ = 0;
    std::size_t bytes_ = 0;
    void* data_ = nullptr;
};

// Device memory reused by every call of one operation, grown (never shrunk) on demand.
class DeviceScratch {
  public:
    explicit DeviceScratch(std::string_view what) : what_(what) {}
    // At least `bytes` of device memory. Growing waits for queued work that may still read the
    // old allocation.
    void* reserve(const CudaContext& context, std::size_t bytes) {
        if (bytes <= memory_.bytes()) return memory_.get();
        const std::size_t grown = std::max(bytes, 2 * memory_.bytes());
        context.synchronize("waiting before growing a scratch buffer");
        memory_ = DeviceMemory();  // free first: the old and new sizes need not fit together
        memory_ = DeviceMemory(context.device(), grown, what_);
        return memory_.get();
    }

  private:
    std::string_view what_;  // a string literal
    DeviceMemory memory_;
};

// Copies host ints into `scratch` (stream-ordered: kernels queued earlier still see the old
// contents). cudaMemcpyAsync from pageable memory has consumed `values` when it returns.
const int* upload_ints(const CudaContext& context, DeviceScratch& scratch,
                       std::span<const int> values, std::string_view what) {
    auto* device = static_cast<int*>(scratch.reserve(context, values.size_bytes()));
    if (!values.empty())
        check(cudaMemcpyAsync(device, values.data(), values.size_bytes(), cudaMemcpyHostToDevice,
                              context.stream()),
              context.device(), what);
    return device;
}

class CudaBuffer final : public DeviceBuffer {
  public:
    CudaBuffer(const std::shared_ptr<CudaContext>& context, std::size_t floats)
        : context_(context),
          memory_(context->device(), std::max<std::size_t>(floats, 1) * sizeof(float),
                  "an activation buffer"),
          size_(floats) {
        // Zeroed like the CPU backend's buffers.
        check(cudaMemsetAsync(memory_.get(), 0, memory_.bytes(), context->stream()),
              context->device(), "clearing a new buffer");
    }
    float* data() override { return static_cast<float*>(memory_.get()); }
    const float* data() const override { return static_cast<const float*>(memory_.get()); }
    std::size_t size() const override { return size_; }

  private:
    std::shared_ptr<CudaContext> context_;  // outlives memory_: declared first
    DeviceMemory memory_;
    std::size_t size_;
};

// A matrix as stored in the checkpoint ([rows, cols] row-major), converted to `type`.
class CudaWeight final : public Weight {
  public:
    CudaWeight(std::shared_ptr<CudaContext> context, DeviceMemory memory, DType type, int rows,
               int cols, MatrixLayout layout)
        : context_(std::move(context)),
          memory_(std::move(memory)),
          type_(type),
          rows_(rows),
          cols_(cols),
          layout_(layout) {}
    int in_features() const override { return layout_ == MatrixLayout::kInOut ? rows_ : cols_; }
    int out_features() const override { return layout_ == MatrixLayout::kInOut ? cols_ : rows_; }
    std::size_t resident_bytes() const override { return memory_.bytes(); }
    WeightFormat format() const override {
        return type_ == DType::kF32   ? WeightFormat::kF32
               : type_ == DType::kF16 ? WeightFormat::kF16
                                      : WeightFormat::kBF16;
    }

    const void* data() const { return memory_.get(); }
    DType type() const { return type_; }
    int stored_rows() const { return rows_; }
    int stored_cols() const { return cols_; }
    MatrixLayout layout() const { return layout_; }

  private:
    std::shared_ptr<CudaContext> context_;
    DeviceMemory memory_;
    DType type_;
    int rows_, cols_;
    MatrixLayout layout_;
};

class CudaKvStorage final : public KvStorage {
  public:
    CudaKvStorage(std::shared_ptr<CudaContext> context, int layers, KvLayout layout)
        : context_(std::move(context)),
          layers_(layers),
          layout_(layout),
          memory_(context_->device(), layout.floats(layers) * sizeof(float), "the KV cache") {}

    int num_blocks() const override { return layout_.blocks; }
    int block_tokens() const override { return layout_.block_tokens; }
    std::size_t bytes() const override { return memory_.bytes(); }
    void copy_block(int from, int to) override {
        if (from < 0 || from >= layout_.blocks || to < 0 || to >= layout_.blocks)
            fail(ErrorCode::kInternal, "copy_block({}, {}): the KV cache has blocks [0, {})", from,
                 to, layout_.blocks);
        std::lock_guard lock(context_->mutex());
        context_->activate();
        const std::size_t block_bytes =
            static_cast<std::size_t>(layout_.block_tokens) * layout_.n_embd * sizeof(float);
        for (int layer = 0; layer < layers_; ++layer)
            for (int kind = 0; kind < 2; ++kind)
                check(cudaMemcpyAsync(data() + layout_.slot(layer, kind, to, 0),
                                      data() + layout_.slot(layer, kind, from, 0), block_bytes,
                                      cudaMemcpyDeviceToDevice, context_->stream()),
                      context_->device(), "copying a KV block");
    }

    int layers() const { return layers_; }
    const KvLayout& layout() const { return layout_; }
    float* data() { return static_cast<float*>(memory_.get()); }

  private:
    std::shared_ptr<CudaContext> context_;
    int layers_;
    KvLayout layout_;
    DeviceMemory memory_;
};

const CudaWeight& as_cuda(const Weight& weight) {
    return static_cast<const CudaWeight&>(weight);
}

// kAuto keeps bf16 checkpoints exact and halves everything else to f16 (the GEMMs run on f16 or
// bf16 tensor cores).
DType weight_type(WeightFormat format, const io::TensorView& tensor) {
    switch (format) {
        case WeightFormat::kAuto:
            return tensor.dtype == DType::kBF16 ? DType::kBF16 : DType::kF16;
        case WeightFormat::kF32:
            return DType::kF32;
        case WeightFormat::kF16:
            return DType::kF16;
        case WeightFormat::kBF16:
            return DType::kBF16;
        case WeightFormat::kQ8:
            break;
    }
    fail(ErrorCode::kUnsupported,
         "{}: tensor '{}': the cuda backend keeps weights in f16, bf16 or f32; weight format '{}' "
         "is not available",
         tensor.file, tensor.name, to_string(format));
}

class CudaBackend final : public Backend {
  public:
    explicit CudaBackend(int device)
        : context_(std::make_shared<CudaContext>(device)),
          index_scratch_("row indices"),
          attention_scratch_("attention block tables"),
          input_scratch_("GEMM inputs") {}

    ~CudaBackend() override {
        // Queued work may still use the scratch buffers freed next.
        cudaSetDevice(context_->device());
        cudaStreamSynchronize(context_->stream());
    }

    std::string name() const override { return fmt::format("cuda:{}", context_->device()); }
    int threads() const override { return 1; }

    std::unique_ptr<DeviceBuffer> allocate(std::size_t floats) override {
        std::lock_guard lock(context_->mutex());
        context_->activate();
        return std::make_unique<CudaBuffer>(context_, floats);
    }

    using Backend::allocate_kv;
    std::unique_ptr<KvStorage> allocate_kv(int layers, int blocks, int block_tokens, int n_embd,
                                           KvFormat format) override {
        if (format != KvFormat::kF32)
            fail_param("kv_cache_dtype",
                       "the CUDA backend keeps its KV cache in f32; KV cache dtype {} is not "
                       "supported on {}",
                       to_string(format), name());
        if (layers <= 0 || blocks <= 0 || block_tokens <= 0 || n_embd <= 0)
            fail(ErrorCode::kInternal,
                 "allocate_kv: layers {}, blocks {}, block_tokens {}, n_embd {} must be positive",
                 layers, blocks, block_tokens, n_embd);
        std::lock_guard lock(context_->mutex());
        context_->activate();
        return std::make_unique<CudaKvStorage>(context_, layers,
                                               KvLayout{blocks, block_tokens, n_embd});
    }

    std::unique_ptr<Weight> upload_matrix(const io::TensorView& tensor, MatrixLayout layout,
                                          WeightFormat format) override {
        if (tensor.shape.size() != 2)
            fail(ErrorCode::kInternal, "{}: tensor '{}' is not a matrix", tensor.file, tensor.name);
        const DType type = weight_type(format, tensor);
        const auto count = static_cast<std::size_t>(tensor.numel());
        std::lock_guard lock(context_->mutex());
        context_->activate();
        const int device = context_->device();
        const std::string what = fmt::format("tensor '{}' of {}", tensor.name, tensor.file);
        DeviceMemory memory(device, count * dtype_size(type), what);
        if (tensor.dtype == type) {
            check(cudaMemcpyAsync(memory.get(), tensor.data.data(), tensor.data.size(),
                                  cudaMemcpyHostToDevice, context_->stream()),
                  device, "uploading " + what);
            context_->synchronize("uploading " + what);
        } else {
            DeviceMemory staging(device, tensor.data.size(), "staging " + what);
            check(cudaMemcpyAsync(staging.get(), tensor.data.data(), tensor.data.size(),
                                  cudaMemcpyHostToDevice, context_->stream()),
                  device, "uploading " + what);
            cuda::launch_convert(tensor.dtype, staging.get(), type, memory.get(), count,
                                 context_->stream());
            check_launch(device, "convert");
            context_->synchronize("converting " + what);  // before staging is freed
        }
        return std::make_unique<CudaWeight>(context_, std::move(memory), type,
                                            static_cast<int>(tensor.shape[0]),
                                            static_cast<int>(tensor.shape[1]), layout);
    }

    std::unique_ptr<DeviceBuffer> upload_vector(const io::TensorView& tensor) override {
        const auto count = static_cast<std::size_t>(tensor.numel());
        std::vector<float> host(count);
        convert_to_f32(tensor.dtype, tensor.data.data(), count, host.data());
        std::lock_guard lock(context_->mutex());
        context_->activate();
        auto buffer = std::make_unique<CudaBuffer>(context_, count);
        check(cudaMemcpyAsync(buffer->data(), host.data(), count * sizeof(float),
                              cudaMemcpyHostToDevice, context_->stream()),
              context_->device(), fmt::format("uploading tensor '{}'", tensor.name));
        context_->synchronize(fmt::format("uploading tensor '{}'", tensor.name));
        return buffer;
    }

    void embedding(const Weight& table, std::span<const std::int32_t> ids,
                   MatrixView out) override {
        const auto& w = as_cuda(table);
        if (static_cast<std::size_t>(out.rows) != ids.size() || out.cols != w.stored_cols())
            fail(ErrorCode::kInternal, "embedding: {} ids of width {} into a [{}, {}] output",
                 ids.size(), w.stored_cols(), out.rows, out.cols);
        for (std::size_t r = 0; r < ids.size(); ++r)
            if (ids[r] < 0 || ids[r] >= w.stored_rows())
                fail(ErrorCode::kInvalidArgument,
                     "embedding: id {} (row {}) is outside the table's [0, {})", ids[r], r,
                     w.stored_rows());
        std::lock_guard lock(context_->mutex());
        context_->activate();
        const int* device_ids = upload_ints(*context_, index_scratch_, ids, "uploading ids");
        cuda::launch_embedding(w.type(), w.data(), w.stored_cols(), device_ids, out.rows, out.data,
                               context_->stream());
        check_launch(context_->device(), "embedding");
    }

    // y = x·W: with row-major x [M, K] and y [M, N], cuBLAS (column-major) computes
    // yᵀ [N, M] = op(W) [N, K] · xᵀ [K, M]. A row-major [K, N] weight is column-major [N, K]
    // (op = N); a row-major [N, K] weight is column-major [K, N] (op = T). Either way lda is the
    // stored row length.
    void linear(MatrixView x, const Weight& weight, const DeviceBuffer* bias,
                MatrixView y) override {
        const auto& w = as_cuda(weight);
        const int m = x.rows, k = w.in_features(), n = w.out_features();
        if (x.cols != k || y.cols != n || y.rows != m)
            fail(ErrorCode::kInternal, "linear: x [{}, {}] · W [{}, {}] into y [{}, {}]", x.rows,
                 x.cols, k, n, y.rows, y.cols);
        if (bias != nullptr && bias->size() < static_cast<std::size_t>(n))
            fail(ErrorCode::kInternal, "linear: bias of {} floats for {} outputs", bias->size(), n);
        if (m == 0) return;
        std::lock_guard lock(context_->mutex());
        context_->activate();
        const int device = context_->device();
        const void* input = x.data;
        if (w.type() != DType::kF32) {
            const std::size_t count = static_cast<std::size_t>(m) * k;
            void* converted = input_scratch_.reserve(*context_, count * dtype_size(w.type()));
            cuda::launch_convert(DType::kF32, x.data, w.type(), converted, count,
                                 context_->stream());
            check_launch(device, "convert");
            input = converted;
        }
        const float alpha = 1.0f, beta = 0.0f;
        const cudaDataType_t type = cuda_type(w.type());
        check_cublas(
            cublasGemmEx(context_->cublas(),
                         w.layout() == MatrixLayout::kInOut ? CUBLAS_OP_N : CUBLAS_OP_T,
                         CUBLAS_OP_N, n, m, k, &alpha, w.data(), type, w.stored_cols(), input, type,
                         k, &beta, y.data, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            device, fmt::format("cublasGemmEx ({} x {} x {}, {})", m, n, k, to_string(w.type())));
        if (bias != nullptr) {
            cuda::launch_add_bias(y.data, bias->data(), m, n, context_->stream());
            check_launch(device, "add_bias");
        }
    }

    void layer_norm(MatrixView x, const DeviceBuffer& gamma, const DeviceBuffer& beta, float eps,
                    MatrixView y) override {
        if (x.rows != y.rows || x.cols != y.cols ||
            gamma.size() < static_cast<std::size_t>(x.cols) ||
            beta.size() < static_cast<std::size_t>(x.cols))
            fail(ErrorCode::kInternal,
                 "layer_norm: x [{}, {}], y [{}, {}], gamma of {} and beta of {} floats", x.rows,
                 x.cols, y.rows, y.cols, gamma.size(), beta.size());
        std::lock_guard lock(context_->mutex());
        context_->activate();
        cuda::launch_layer_norm(x.data, gamma.data(), beta.data(), eps, x.rows, x.cols, y.data,
                                context_->stream());
        check_launch(context_->device(), "layer_norm");
    }

    void activation(Activation kind, MatrixView x) override {
        std::lock_guard lock(context_->mutex());
        context_->activate();
        cuda::launch_activation(kind, x.data, static_cast<std::size_t>(x.rows) * x.cols,
                                context_->stream());
        check_launch(context_->device(), "activation");
    }

    void add(MatrixView x, MatrixView y) override {
        if (x.rows != y.rows || x.cols != y.cols)
            fail(ErrorCode::kInternal, "add: [{}, {}] += [{}, {}]", x.rows, x.cols, y.rows, y.cols);
        std::lock_guard lock(context_->mutex());
        context_->activate();
        cuda::launch_add(x.data, y.data, static_cast<std::size_t>(x.rows) * x.cols,
                         context_->stream());
        check_launch(context_->device(), "add");
    }

    void attention(MatrixView qkv, const AttentionBatch& batch, KvStorage& storage, int layer,
                   const AttentionParams& params, MatrixView out) override {
        auto& kv = static_cast<CudaKvStorage&>(storage);
        const KvLayout& layout = kv.layout();
        const int n_embd = out.cols;
        if (n_embd != layout.n_embd || qkv.cols != 3 * n_embd || qkv.rows != out.rows ||
            static_cast<std::size_t>(qkv.rows) != batch.positions.size())
            fail(ErrorCode::kInternal,
                 "attention: qkv [{}, {}], out [{}, {}], {} positions, KV cache width {}", qkv.rows,
                 qkv.cols, out.rows, out.cols, batch.positions.size(), layout.n_embd);
        if (params.n_head <= 0 || n_embd % params.n_head != 0)
            fail(ErrorCode::kInternal, "attention: n_embd {} is not a multiple of n_head {}",
                 n_embd, params.n_head);
        if (n_embd / params.n_head > cuda::kMaxHeadDim)
            fail(ErrorCode::kUnsupported,
                 "the cuda backend's attention handles head dimensions up to {}; this model has "
                 "{} (n_embd {} / n_head {})",
                 cuda::kMaxHeadDim, n_embd / params.n_head, n_embd, params.n_head);
        if (layer < 0 || layer >= kv.layers())
            fail(ErrorCode::kInternal, "attention: layer {} of a KV cache with {} layers", layer,
                 kv.layers());
        if (qkv.rows == 0) return;
        std::vector<int> packed =
            cuda::pack_attention_batch(batch, layout.blocks, layout.block_tokens);

        std::lock_guard lock(context_->mutex());
        context_->activate();
        // Every layer of a forward pass sees the same batch: upload it once.
        if (packed != uploaded_batch_) {
            uploaded_batch_.clear();
            packed_batch_ = upload_ints(*context_, attention_scratch_, packed,
                                        "uploading attention block tables");
            uploaded_batch_ = std::move(packed);
        }
        const PagedRows rows{packed_batch_, qkv.rows, layout.block_tokens};
        cuda::launch_write_kv(qkv.data, rows, layout, layer, kv.data(), context_->stream());
        check_launch(context_->device(), "write_kv");
        cuda::launch_paged_attention(qkv.data, rows, kv.data(), layout, layer, params.n_head,
                                     params.scale, out.data, context_->stream());
        check_launch(context_->device(), "paged_attention");
    }

    void gather_rows(MatrixView x, std::span<const int> rows, MatrixView out) override {
        if (static_cast<std::size_t>(out.rows) != rows.size() || out.cols != x.cols)
            fail(ErrorCode::kInternal, "gather_rows: {} rows of width {} into [{}, {}]",
                 rows.size(), x.cols, out.rows, out.cols);
        for (std::size_t i = 0; i < rows.size(); ++i)
            if (rows[i] < 0 || rows[i] >= x.rows)
                fail(ErrorCode::kInternal, "gather_rows: row {} (entry {}) outside [0, {})",
                     rows[i], i, x.rows);
        std::lock_guard lock(context_->mutex());
        context_->activate();
        const int* device_rows = upload_ints(*context_, index_scratch_, rows, "uploading rows");
        cuda::launch_gather_rows(x.data, x.cols, device_rows, out.rows, out.data,
                                 context_->stream());
        check_launch(context_->device(), "gather_rows");
    }

    void copy_to_host(MatrixView x, float* host) override {
        const std::size_t bytes = static_cast<std::size_t>(x.rows) * x.cols * sizeof(float);
        std::lock_guard lock(context_->mutex());
        context_->activate();
        if (bytes > 0)
            check(cudaMemcpyAsync(host, x.data, bytes, cudaMemcpyDeviceToHost, context_->stream()),
                  context_->device(), "copying results to the host");
        context_->synchronize("running the forward pass");
    }

  private:
    std::shared_ptr<CudaContext> context_;
    DeviceScratch index_scratch_;      // embedding ids, gathered rows
    DeviceScratch attention_scratch_;  // the packed attention batch
    DeviceScratch input_scratch_;      // linear's input rounded to the weight's type
    std::vector<int> uploaded_batch_;  // what attention_scratch_ holds
    const int* packed_batch_ = nullptr;
};

}  // namespace

CudaDevices probe_cuda_devices() {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        cudaGetLastError();
        return {0, "cudaGetDeviceCount: " + describe_status(status)};
    }
    if (count == 0) return {0, "cudaGetDeviceCount reported no devices"};
    return {count, {}};
}

std::string describe_cuda_device(int device) {
    cudaDeviceProp properties{};
    const cudaError_t status = cudaGetDeviceProperties(&properties, device);
    if (status != cudaSuccess) {
        cudaGetLastError();
        fail(ErrorCode::kUnavailable, "cuda:{}: cannot read the device's properties: {}", device,
             describe_status(status));
    }
    return fmt::format("{}, compute capability {}.{}, {:.1f} GiB", properties.name,
                       properties.major, properties.minor, gib(properties.totalGlobalMem));
}

std::unique_ptr<Backend> make_cuda_backend(int device) {
    const CudaDevices devices = probe_cuda_devices();
    if (devices.count == 0)
        fail(ErrorCode::kUnavailable, "cuda:{}: no CUDA device is visible ({})", device,
             devices.detail);
    if (device < 0 || device >= devices.count)
        fail(ErrorCode::kUnavailable, "cuda:{}: only {} CUDA device(s) visible (cuda:0 to cuda:{})",
             device, devices.count, devices.count - 1);
    try {
        return std::make_unique<CudaBackend>(device);
    } catch (const Error& error) {
        if (error.code() == ErrorCode::kResourceExhausted) throw;
        fail(ErrorCode::kUnavailable, "cuda:{}: cannot initialise the device: {}", device,
             error.what());
    }
}

}  // namespace llmserve::backend
