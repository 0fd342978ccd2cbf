// Host side of the CUDA backend: device memory, uploads, cuBLAS GEMMs and kernel launches, all on
// one stream per backend so that every operation runs in the order the model issues it. Only
// copy_to_host (and the one-time weight uploads) wait for the device.
#include "backend/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "backend/cuda/attention_batch.h"
#include "backend/cuda/graph_cache.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/paged_layout.h"
#include "backend/cuda/step_recorder.h"
#include "common/error.h"

namespace llmserve::backend {
namespace {

using cuda::HeadLayout;
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
        default:  // quantized types never reach the GPU (refused at upload)
            break;
    }
    return CUDA_R_32F;
}

// The stream, the cuBLAS handle and the lock shared by a backend and everything it allocated, so
// that buffers and caches may outlive the Backend object safely.
class CudaContext {
  public:
    explicit CudaContext(int device) : device_(device) {
        activate();
        try {
            check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), device,
                  "creating a stream");
            check_cublas(cublasCreate(&cublas_), device, "cublasCreate");
            check_cublas(cublasSetStream(cublas_, stream_), device, "cublasSetStream");
            // A workspace of our own (set after the stream, which resets it): cuBLAS must not
            // allocate while a CUDA graph is being captured.
            check(cudaMalloc(&cublas_workspace_, kCublasWorkspaceBytes), device,
                  "allocating the cuBLAS workspace");
            check_cublas(cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspaceBytes),
                         device, "cublasSetWorkspace");
        } catch (...) {
            release();
            throw;
        }
    }
    ~CudaContext() { release(); }
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
    // Serialises everything that touches the stream or the backend's host state when several
    // threads share one backend. Recursive: run_step holds it for a whole pass (a capture must
    // not take in another thread's work) while the pass's own calls lock it again.
    std::recursive_mutex& mutex() { return mutex_; }

  private:
    void release() {
        cudaSetDevice(device_);
        if (cublas_ != nullptr) cublasDestroy(cublas_);
        if (cublas_workspace_ != nullptr) cudaFree(cublas_workspace_);
        if (stream_ != nullptr) cudaStreamDestroy(stream_);
    }

    static constexpr std::size_t kCublasWorkspaceBytes = 32u << 20;  // NVIDIA's advice for Hopper
    int device_;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t cublas_ = nullptr;
    void* cublas_workspace_ = nullptr;
    std::recursive_mutex mutex_;
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
        ++generation_;
        memory_ = DeviceMemory(context.device(), grown, what_);
        return memory_.get();
    }

    const void* get() const { return memory_.get(); }
    // Changes whenever the memory is replaced (its address may or may not change).
    std::size_t generation() const { return generation_; }

  private:
    std::string_view what_;  // a string literal
    DeviceMemory memory_;
    std::size_t generation_ = 0;
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

// Page-locked host memory: the device copies results into it by DMA at full link speed (pageable
// memory goes through a driver staging buffer, about half as fast).
class PinnedHostBuffer final : public HostBuffer {
  public:
    PinnedHostBuffer(std::shared_ptr<CudaContext> context, void* data, std::size_t floats)
        : context_(std::move(context)), data_(static_cast<float*>(data)), size_(floats) {}
    ~PinnedHostBuffer() override {
        cudaSetDevice(context_->device());
        cudaFreeHost(data_);
    }
    PinnedHostBuffer(const PinnedHostBuffer&) = delete;
    PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;
    float* data() override { return data_; }
    std::size_t size() const override { return size_; }

  private:
    std::shared_ptr<CudaContext> context_;
    float* data_;
    std::size_t size_;
};

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
    CudaKvStorage(std::shared_ptr<CudaContext> context, int layers, KvLayout layout,
                  KvFormat format)
        : context_(std::move(context)),
          layers_(layers),
          layout_(layout),
          format_(format),
          memory_(context_->device(), layout.elements(layers) * element_bytes(format),
                  "the KV cache") {}

    int num_blocks() const override { return layout_.blocks; }
    int block_tokens() const override { return layout_.block_tokens; }
    std::size_t bytes() const override { return memory_.bytes(); }
    void copy_block(int from, int to) override {
        if (from < 0 || from >= layout_.blocks || to < 0 || to >= layout_.blocks)
            fail(ErrorCode::kInternal, "copy_block({}, {}): the KV cache has blocks [0, {})", from,
                 to, layout_.blocks);
        std::lock_guard lock(context_->mutex());
        context_->activate();
        const std::size_t element = element_bytes(format_);
        const std::size_t block_bytes =
            static_cast<std::size_t>(layout_.block_tokens) * layout_.kv_dim * element;
        auto* base = static_cast<std::byte*>(memory_.get());
        for (int layer = 0; layer < layers_; ++layer)
            for (int kind = 0; kind < 2; ++kind)
                check(cudaMemcpyAsync(base + layout_.slot(layer, kind, to, 0) * element,
                                      base + layout_.slot(layer, kind, from, 0) * element,
                                      block_bytes, cudaMemcpyDeviceToDevice, context_->stream()),
                      context_->device(), "copying a KV block");
    }

    int layers() const { return layers_; }
    const KvLayout& layout() const { return layout_; }
    KvFormat format() const { return format_; }
    void* data() { return memory_.get(); }

  private:
    std::shared_ptr<CudaContext> context_;
    int layers_;
    KvLayout layout_;
    KvFormat format_;
    DeviceMemory memory_;
};

const CudaWeight& as_cuda(const Weight& weight) {
    return static_cast<const CudaWeight&>(weight);
}

// kAuto keeps bf16 checkpoints exact and halves everything else to f16 (the GEMMs run on f16 or
// bf16 tensor cores). GGUF's quantized blocks are dequantized at load (no quantized GEMM here):
// their values, a few bits each, are exact in f16 up to the rounding of the block scales.
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
        case WeightFormat::kQ4:
            break;
    }
    fail(ErrorCode::kUnsupported,
         "{}: tensor '{}': the cuda backend keeps weights in f16, bf16 or f32; weight format '{}' "
         "is not available",
         tensor.file, tensor.name, to_string(format));
}

// Operations a pass's record distinguishes (see StepRecorder::note).
enum class Op : std::uint8_t {
    kEmbedding,
    kLinear,
    kLayerNorm,
    kRmsNorm,
    kGatedActivation,
    kAdd,
    kAttention,
    kGatherRows,
    kCopyToHost
};

// How the calls of a forward pass are carried out.
enum class StepMode {
    kEager,    // launched as they are made
    kRecord,   // checked and noted only: nothing reaches the device
    kCapture,  // launched into a CUDA graph being captured
};

class CudaBackend final : public Backend {
  public:
    CudaBackend(int device, const CudaOptions& options)
        : context_(std::make_shared<CudaContext>(device)),
          options_(options),
          index_scratch_("row indices"),
          attention_scratch_("attention block tables"),
          input_scratch_("GEMM inputs"),
          graph_inputs_("the inputs of CUDA graphs"),
          graphs_(kMaxGraphs, [](cudaGraphExec_t& graph) { cudaGraphExecDestroy(graph); }) {}

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

    std::unique_ptr<HostBuffer> allocate_host(std::size_t floats) override {
        std::lock_guard lock(context_->mutex());
        context_->activate();
        void* data = nullptr;
        if (cudaMallocHost(&data, std::max<std::size_t>(floats, 1) * sizeof(float)) == cudaSuccess)
            return std::make_unique<PinnedHostBuffer>(context_, data, floats);
        cudaGetLastError();  // pageable memory works too, only slower
        return Backend::allocate_host(floats);
    }

    using Backend::allocate_kv;
    std::unique_ptr<KvStorage> allocate_kv(int layers, int blocks, int block_tokens, int kv_dim,
                                           KvFormat format) override {
        if (layers <= 0 || blocks <= 0 || block_tokens <= 0 || kv_dim <= 0)
            fail(ErrorCode::kInternal,
                 "allocate_kv: layers {}, blocks {}, block_tokens {}, kv_dim {} must be positive",
                 layers, blocks, block_tokens, kv_dim);
        std::lock_guard lock(context_->mutex());
        context_->activate();
        return std::make_unique<CudaKvStorage>(context_, layers,
                                               KvLayout{blocks, block_tokens, kv_dim}, format);
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
        if (is_quantized(tensor.dtype)) {
            std::vector<float> values(count);
            convert_to_f32(tensor.dtype, tensor.data.data(), count, values.data());
            DeviceMemory staging(device, count * sizeof(float), "staging " + what);
            check(cudaMemcpyAsync(staging.get(), values.data(), count * sizeof(float),
                                  cudaMemcpyHostToDevice, context_->stream()),
                  device, "uploading " + what);
            cuda::launch_convert(DType::kF32, staging.get(), type, memory.get(), count,
                                 context_->stream());
            check_launch(device, "convert");
            context_->synchronize("converting " + what);  // before staging and values are freed
        } else if (tensor.dtype == type) {
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
        begin_call();
        const int* device_ids = stage_input(ids, index_scratch_, "uploading ids");
        recorder_.note(Op::kEmbedding, w.data(), w.type(), out.data, out.rows, out.cols);
        if (mode_ == StepMode::kRecord) return;
        cuda::launch_embedding(w.type(), w.data(), w.stored_cols(), device_ids, out.rows, out.data,
                               context_->stream());
        check_launch(context_->device(), "embedding");
    }

    // y = x·W: with row-major x [M, K] and y [M, N], cuBLAS (column-major) computes
    // yᵀ [N, M] = op(W) [N, K] · xᵀ [K, M]. A row-major [K, N] weight is column-major [N, K]
    // (op = N); a row-major [N, K] weight is column-major [K, N] (op = T). Either way lda is the
    // stored row length. Accumulating is the GEMM's beta = 1 (it reads y); bias and activation
    // follow in one element-wise kernel.
    using Backend::linear;
    void linear(MatrixView x, const Weight& weight, const LinearEpilogue& epilogue,
                MatrixView y) override {
        const auto& w = as_cuda(weight);
        const int m = x.rows, k = w.in_features(), n = w.out_features();
        check_linear(x, k, n, epilogue, y);
        if (m == 0) return;
        std::lock_guard lock(context_->mutex());
        begin_call();
        const float* bias = epilogue.bias != nullptr ? epilogue.bias->data() : nullptr;
        const Activation kind = epilogue.activation.value_or(Activation::kGeluNew);
        recorder_.note(Op::kLinear, x.data, m, k, n, w.data(), w.type(), w.layout(), bias,
                       epilogue.activation.has_value(), kind, epilogue.accumulate, y.data);
        if (mode_ == StepMode::kRecord) return;
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
        const float alpha = 1.0f, beta = epilogue.accumulate ? 1.0f : 0.0f;
        const cudaDataType_t type = cuda_type(w.type());
        check_cublas(
            cublasGemmEx(context_->cublas(),
                         w.layout() == MatrixLayout::kInOut ? CUBLAS_OP_N : CUBLAS_OP_T,
                         CUBLAS_OP_N, n, m, k, &alpha, w.data(), type, w.stored_cols(), input, type,
                         k, &beta, y.data, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            device, fmt::format("cublasGemmEx ({} x {} x {}, {})", m, n, k, to_string(w.type())));
        if (bias != nullptr || epilogue.activation) {
            cuda::launch_bias_activation(y.data, bias, epilogue.activation.has_value(), kind, m, n,
                                         context_->stream());
            check_launch(device, "bias_activation");
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
        begin_call();
        recorder_.note(Op::kLayerNorm, x.data, x.rows, x.cols, gamma.data(), beta.data(), eps,
                       y.data);
        if (mode_ == StepMode::kRecord) return;
        cuda::launch_layer_norm(x.data, gamma.data(), beta.data(), eps, x.rows, x.cols, y.data,
                                context_->stream());
        check_launch(context_->device(), "layer_norm");
    }

    void rms_norm(MatrixView x, const DeviceBuffer& gamma, float eps, MatrixView y) override {
        if (x.rows != y.rows || x.cols != y.cols || gamma.size() < static_cast<std::size_t>(x.cols))
            fail(ErrorCode::kInternal, "rms_norm: x [{}, {}], y [{}, {}], gamma of {} floats",
                 x.rows, x.cols, y.rows, y.cols, gamma.size());
        std::lock_guard lock(context_->mutex());
        begin_call();
        recorder_.note(Op::kRmsNorm, x.data, x.rows, x.cols, gamma.data(), eps, y.data);
        if (mode_ == StepMode::kRecord) return;
        cuda::launch_rms_norm(x.data, gamma.data(), eps, x.rows, x.cols, y.data,
                              context_->stream());
        check_launch(context_->device(), "rms_norm");
    }

    void gated_activation(MatrixView gate_up, Activation activation, MatrixView out) override {
        if (gate_up.cols != 2 * out.cols || gate_up.rows != out.rows)
            fail(ErrorCode::kInternal, "gated_activation: gate_up [{}, {}] -> out [{}, {}]",
                 gate_up.rows, gate_up.cols, out.rows, out.cols);
        std::lock_guard lock(context_->mutex());
        begin_call();
        recorder_.note(Op::kGatedActivation, gate_up.data, out.rows, out.cols, activation,
                       out.data);
        if (mode_ == StepMode::kRecord) return;
        cuda::launch_gated_activation(gate_up.data, activation, out.rows, out.cols, out.data,
                                      context_->stream());
        check_launch(context_->device(), "gated_activation");
    }

    void add(MatrixView x, MatrixView y) override {
        if (x.rows != y.rows || x.cols != y.cols)
            fail(ErrorCode::kInternal, "add: [{}, {}] += [{}, {}]", x.rows, x.cols, y.rows, y.cols);
        std::lock_guard lock(context_->mutex());
        begin_call();
        const std::size_t count = static_cast<std::size_t>(x.rows) * x.cols;
        recorder_.note(Op::kAdd, x.data, y.data, count);
        if (mode_ == StepMode::kRecord) return;
        cuda::launch_add(x.data, y.data, count, context_->stream());
        check_launch(context_->device(), "add");
    }

    void attention(MatrixView qkv, const AttentionBatch& batch, KvStorage& storage, int layer,
                   const AttentionParams& params, MatrixView out) override {
        auto& kv = static_cast<CudaKvStorage&>(storage);
        const KvLayout& layout = kv.layout();
        const HeadLayout heads = cuda::attention_heads(qkv, params, layout.kv_dim, out);
        const std::optional<cuda::QkTransform> transform = cuda::qk_transform(params);
        if (static_cast<std::size_t>(qkv.rows) != batch.positions.size())
            fail(ErrorCode::kInternal, "attention: qkv of {} rows for {} positions", qkv.rows,
                 batch.positions.size());
        if (layer < 0 || layer >= kv.layers())
            fail(ErrorCode::kInternal, "attention: layer {} of a KV cache with {} layers", layer,
                 kv.layers());
        if (qkv.rows == 0) return;
        const std::vector<int> packed =
            cuda::pack_attention_batch(batch, layout.blocks, layout.block_tokens);

        std::lock_guard lock(context_->mutex());
        begin_call();
        // Every layer of a pass attends over the same batch: it is staged (and, eagerly,
        // uploaded) once.
        const int* device_batch = nullptr;
        if (const auto offset = recorder_.find_last(packed)) {
            recorder_.note(*offset);
            if (mode_ == StepMode::kCapture)
                device_batch = graph_input(*offset);
            else if (mode_ == StepMode::kEager)
                device_batch = eager_batch_ != nullptr
                                   ? eager_batch_
                                   : upload_ints(*context_, attention_scratch_, packed,
                                                 "uploading attention block tables");
        } else {
            device_batch =
                stage_input(packed, attention_scratch_, "uploading attention block tables");
            eager_batch_ = device_batch;
        }
        recorder_.note(Op::kAttention, qkv.data, qkv.rows, heads, kv.data(), kv.format(),
                       layout.blocks, layout.block_tokens, layer, params.window, params.scale,
                       out.data, transform.has_value());
        if (transform)
            recorder_.note(transform->q_norm, transform->k_norm, transform->norm_eps,
                           transform->inv_freq, transform->rotary_dim, transform->attention_factor);
        if (mode_ == StepMode::kRecord) return;
        const PagedRows rows{device_batch, qkv.rows, layout.block_tokens};
        const cudaStream_t stream = context_->stream();
        if (transform) {
            cuda::launch_transform_qk(qkv.data, rows, heads, *transform, stream);
            check_launch(context_->device(), "transform_qk");
        }
        cuda::launch_write_kv(qkv.data, rows, heads, layout, layer, kv.format(), kv.data(), stream);
        check_launch(context_->device(), "write_kv");
        cuda::launch_paged_attention(qkv.data, rows, kv.data(), kv.format(), layout, layer, heads,
                                     params.window, params.scale, out.data, stream);
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
        begin_call();
        const int* device_rows = stage_input(rows, index_scratch_, "uploading rows");
        recorder_.note(Op::kGatherRows, x.data, x.cols, out.data, out.rows);
        if (mode_ == StepMode::kRecord) return;
        cuda::launch_gather_rows(x.data, x.cols, device_rows, out.rows, out.data,
                                 context_->stream());
        check_launch(context_->device(), "gather_rows");
    }

    void copy_to_host(MatrixView x, float* host) override {
        const std::size_t bytes = static_cast<std::size_t>(x.rows) * x.cols * sizeof(float);
        std::lock_guard lock(context_->mutex());
        begin_call();
        recorder_.note(Op::kCopyToHost, x.data, bytes);
        if (mode_ != StepMode::kEager) {  // a graph cannot copy to pageable memory: after it runs
            recorder_.defer_copy({x.data, host, bytes});
            return;
        }
        if (bytes > 0)
            check(cudaMemcpyAsync(host, x.data, bytes, cudaMemcpyDeviceToHost, context_->stream()),
                  context_->device(), "copying results to the host");
        context_->synchronize("running the forward pass");
    }

    // Decode passes (one row per sequence, every row sampled) of up to kMaxGraphRows rows run as
    // CUDA graphs: the first pass with a given record runs eagerly (so that scratch memory and
    // cuBLAS are warm), the second is captured, later ones replay it. Every pass is recorded first
    // (host-side checks and staging only), which is what lets a replay find its graph and its
    // inputs. Other passes run eagerly.
    void run_step(const StepShape& shape, const std::function<void()>& issue) override {
        std::lock_guard lock(context_->mutex());
        if (!options_.graphs || shape.rows != shape.logits_rows || shape.rows > kMaxGraphRows) {
            run_pass(StepMode::kEager, issue);
            ++stats_.eager_passes;
            return;
        }
        run_pass(StepMode::kRecord, issue);
        const std::uint64_t signature = recorder_.signature();
        // An eager pass since the last capture may have reallocated the GEMM scratch that every
        // graph reads.
        if (graphs_.invalidate_if_moved(input_scratch_.generation())) ++stats_.invalidations;
        const auto decision = graphs_.decide(signature, recorder_.record());
        if (decision.action == Graphs::Action::kReplay) {
            replay(*decision.graph);
            return;
        }
        if (decision.action == Graphs::Action::kCapture && capture(signature, issue)) return;
        run_pass(StepMode::kEager, issue);
        ++stats_.eager_passes;
        graphs_.ran_eagerly(signature);
    }

    CudaGraphStats graph_stats() const {
        std::lock_guard lock(context_->mutex());
        return stats_;
    }

  private:
    static constexpr int kMaxGraphRows = 256;
    static constexpr std::size_t kMaxGraphs = 128;  // least recently used ones are dropped
    using Graphs = cuda::GraphCache<cudaGraphExec_t>;

    // Every operation calls this under the context lock, before staging or launching anything.
    void begin_call() {
        context_->activate();
        if (in_step_) return;
        recorder_.clear();  // outside run_step each call is a pass of its own
        eager_batch_ = nullptr;
    }

    void run_pass(StepMode mode, const std::function<void()>& issue) {
        recorder_.clear();
        eager_batch_ = nullptr;
        mode_ = mode;
        in_step_ = true;
        try {
            issue();
        } catch (...) {
            mode_ = StepMode::kEager;
            in_step_ = false;
            throw;
        }
        mode_ = StepMode::kEager;
        in_step_ = false;
    }

    // Stages `values` for this pass and returns where the device reads them: eagerly, a copy in
    // `scratch`; while capturing, the graph's input area; while recording, nowhere (null).
    const int* stage_input(std::span<const int> values, DeviceScratch& scratch,
                           std::string_view what) {
        const std::size_t offset = recorder_.stage(values);
        switch (mode_) {
            case StepMode::kEager:
                return upload_ints(*context_, scratch, values, what);
            case StepMode::kCapture:
                return graph_input(offset);
            case StepMode::kRecord:
                break;
        }
        return nullptr;
    }
    const int* graph_input(std::size_t offset) const {
        return static_cast<const int*>(graph_inputs_.get()) + offset;
    }

    // Captures the pass recorded as `signature` into a graph and runs it. False when capturing
    // failed: the pass has not run, and GraphCache keeps it eager from then on.
    bool capture(std::uint64_t signature, const std::function<void()>& issue) {
        std::vector<unsigned char> record(recorder_.record().begin(), recorder_.record().end());
        const std::size_t scratch_generation = input_scratch_.generation();
        const cudaStream_t stream = context_->stream();
        try {
            // Graphs read their inputs at the address they were captured with: moving the input
            // area invalidates every graph.
            const std::size_t inputs_generation = graph_inputs_.generation();
            graph_inputs_.reserve(*context_, recorder_.staged().size_bytes());
            if (graph_inputs_.generation() != inputs_generation && graphs_.size() > 0) {
                ++stats_.invalidations;
                graphs_.clear();
            }
            check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
                  context_->device(), "beginning a CUDA graph capture");
        } catch (const Error&) {  // e.g. no memory for the inputs: the pass runs eagerly
            cudaGetLastError();
            graphs_.capture_failed(signature);
            return false;
        }
        cudaGraph_t graph = nullptr;
        try {
            run_pass(StepMode::kCapture, issue);
        } catch (...) {  // e.g. a scratch buffer that had to grow: not allowed while capturing
            cudaStreamEndCapture(stream, &graph);
            if (graph != nullptr) cudaGraphDestroy(graph);
            cudaGetLastError();
            graphs_.capture_failed(signature);
            return false;
        }
        cudaGraphExec_t exec = nullptr;
        cudaError_t status = cudaStreamEndCapture(stream, &graph);
        if (status == cudaSuccess && input_scratch_.generation() == scratch_generation &&
            std::ranges::equal(record, recorder_.record()))
            status = cudaGraphInstantiate(&exec, graph, 0);
        else if (status == cudaSuccess)
            status = cudaErrorStreamCaptureInvalidated;  // the pass changed while capturing
        if (graph != nullptr) cudaGraphDestroy(graph);
        if (status != cudaSuccess) {
            cudaGetLastError();
            graphs_.capture_failed(signature);
            return false;
        }
        ++stats_.captures;
        replay(graphs_.add(signature, record, exec));
        return true;
    }

    // Uploads the recorded pass's inputs to where the graph reads them, runs the graph and
    // delivers its host copies.
    void replay(cudaGraphExec_t graph) {
        std::lock_guard lock(context_->mutex());
        context_->activate();
        const int device = context_->device();
        const cudaStream_t stream = context_->stream();
        const auto staged = recorder_.staged();
        if (!staged.empty())
            check(cudaMemcpyAsync(const_cast<void*>(graph_inputs_.get()), staged.data(),
                                  staged.size_bytes(), cudaMemcpyHostToDevice, stream),
                  device, "uploading the inputs of a CUDA graph");
        check(cudaGraphLaunch(graph, stream), device, "launching a CUDA graph");
        for (const cuda::StepRecorder::HostCopy& copy : recorder_.host_copies())
            check(
                cudaMemcpyAsync(copy.host, copy.device, copy.bytes, cudaMemcpyDeviceToHost, stream),
                device, "copying results to the host");
        context_->synchronize("running a CUDA graph");
        ++stats_.replays;
    }

    std::shared_ptr<CudaContext> context_;
    CudaOptions options_;
    DeviceScratch index_scratch_;       // embedding ids, gathered rows (eager passes)
    DeviceScratch attention_scratch_;   // the packed attention batch (eager passes)
    DeviceScratch input_scratch_;       // linear's input rounded to the weight's type
    DeviceScratch graph_inputs_;        // every graph's staged inputs (one pass runs at a time)
    const int* eager_batch_ = nullptr;  // where this eager pass uploaded its attention batch

    CudaGraphStats stats_;
    StepMode mode_ = StepMode::kEager;
    bool in_step_ = false;
    cuda::StepRecorder recorder_;
    Graphs graphs_;  // after the scratch buffers: destroyed first
};

}  // namespace

CudaGraphStats cuda_graph_stats(const Backend& backend) {
    const auto* cuda = dynamic_cast<const CudaBackend*>(&backend);
    if (cuda == nullptr)
        fail(ErrorCode::kInternal, "cuda_graph_stats: backend {} is not a CUDA backend",
             backend.name());
    return cuda->graph_stats();
}

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

std::unique_ptr<Backend> make_cuda_backend(int device, const CudaOptions& options) {
    const CudaDevices devices = probe_cuda_devices();
    if (devices.count == 0)
        fail(ErrorCode::kUnavailable, "cuda:{}: no CUDA device is visible ({})", device,
             devices.detail);
    if (device < 0 || device >= devices.count)
        fail(ErrorCode::kUnavailable, "cuda:{}: only {} CUDA device(s) visible (cuda:0 to cuda:{})",
             device, devices.count, devices.count - 1);
    try {
        return std::make_unique<CudaBackend>(device, options);
    } catch (const Error& error) {
        if (error.code() == ErrorCode::kResourceExhausted) throw;
        fail(ErrorCode::kUnavailable, "cuda:{}: cannot initialise the device: {}", device,
             error.what());
    }
}

}  // namespace llmserve::backend
