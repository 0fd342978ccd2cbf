// The CUDA backend: weights, activations and the KV cache in device memory; matrix products through
// cuBLAS with f16 (or bf16) inputs and float32 accumulation; layer norm, RMSNorm, RoPE, the gated
// activation, softmax and attention in float32.
//
// Choices, to be measured on a GPU (scripts/gpu-check.sh):
// - Activations stay float32 (the interface's DeviceBuffer). `linear` rounds its input to the
//   weight's type in a small kernel, then runs cublasGemmEx (f16/bf16 inputs, f32 output,
//   CUBLAS_COMPUTE_32F). Its epilogue costs no extra pass where cuBLAS can do it (accumulating
//   into the residual stream is the GEMM's beta = 1) and one element-wise kernel otherwise (bias,
//   then the activation). cublasLt's bias epilogue would save that kernel; GemmEx was chosen
//   because it is the simpler call to get right unseen.
// - The KV cache is f32 or f16 (KvFormat); attention widens f16 in registers.
// - Everything runs on one stream in issue order; the host waits only when results are copied to
//   it and in the one-time weight uploads. Block tables, positions and row ids are staged per
//   pass; the attention batch once per pass (every layer sees the same one).
// - Decode passes replay CUDA graphs (CudaOptions::graphs; see run_step in cuda_backend.cpp and
//   step_recorder.h): one graph launch per pass instead of about 16 launches per layer.
// - Paged attention: one thread block per (row, query head), four warps sharing the cached tokens
//   of the row's window with an online softmax, merged in shared memory; head dimensions up to
//   256. Grouped-query heads read their KV head's keys from the cache once per query head (the
//   KV head's group shares them only through the L2 cache).
// - Per-head q/k RMSNorm and RoPE run in one kernel before the cache write, in place in qkv (as on
//   the CPU); positions come from the staged attention batch, so graphs replay them per pass.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"

namespace llmserve::backend {

// How many CUDA devices the runtime sees. `detail` says why there are none (the runtime's error,
// e.g. "cudaGetDeviceCount: no CUDA-capable device is detected (cudaErrorNoDevice)"); empty when
// count > 0. Never throws.
struct CudaDevices {
    int count = 0;
    std::string detail;
};
CudaDevices probe_cuda_devices();

// "NVIDIA H100 80GB HBM3, compute capability 9.0, 79.1 GiB". Throws Error(kUnavailable) for a
// device the runtime cannot describe.
std::string describe_cuda_device(int device);

struct CudaOptions {
    // Decode passes replay CUDA graphs (one kernel-launch call per pass instead of one per
    // operation). Off: every pass is launched operation by operation (for comparison).
    bool graphs = true;
};

// How a CUDA backend's passes ran (see CudaOptions::graphs). For tests, benchmarks and logs.
struct CudaGraphStats {
    std::size_t eager_passes = 0;   // run_step passes launched operation by operation
    std::size_t captures = 0;       // graphs captured
    std::size_t replays = 0;        // passes run as one graph launch (capturing passes included)
    std::size_t invalidations = 0;  // times every graph was dropped because memory they read moved
};
// Throws Error(kInternal) when `backend` is not a CUDA backend.
CudaGraphStats cuda_graph_stats(const Backend& backend);

// The CUDA backend on `device` (0-based). Weight formats: kAuto keeps bf16 checkpoints in bf16 and
// stores everything else as f16; kF16, kBF16 and kF32 force one (f32 runs exact float32 GEMMs).
// Throws Error(kUnavailable) when the device does not exist or cannot be initialised.
std::unique_ptr<Backend> make_cuda_backend(int device, const CudaOptions& options = {});

}  // namespace llmserve::backend
