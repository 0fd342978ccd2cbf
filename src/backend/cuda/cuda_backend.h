// The CUDA backend: weights, activations and the KV cache in device memory; matrix products through
// cuBLAS with f16 (or bf16) inputs and float32 accumulation; layer norm, softmax and attention in
// float32.
//
// Choices, to be measured on a GPU (scripts/gpu-check.sh):
// - Activations stay float32 (the interface's DeviceBuffer). `linear` rounds its input to the
//   weight's type in a small kernel, then runs cublasGemmEx (f16/bf16 inputs, f32 output,
//   CUBLAS_COMPUTE_32F), then adds the bias in a second kernel. cublasLt's bias epilogue would save
//   that kernel; GemmEx was chosen first because it is the simpler call to get right unseen.
// - The KV cache is float32, which is what the engine sizes it for (sizeof(float) per value).
// - Everything runs on one stream in issue order; the host waits only in copy_to_host and in the
//   one-time weight uploads. Block tables, positions and row ids live in host memory and are
//   uploaded per call; the attention batch is uploaded once per forward pass (every layer sees the
//   same one).
// - Paged attention: one thread block per (row, head), four warps sharing the cached tokens with an
//   online softmax, merged in shared memory; head dimensions up to 256.
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

// The CUDA backend on `device` (0-based). Weight formats: kAuto keeps bf16 checkpoints in bf16 and
// stores everything else as f16; kF16, kBF16 and kF32 force one (f32 runs exact float32 GEMMs).
// Throws Error(kUnavailable) when the device does not exist or cannot be initialised.
std::unique_ptr<Backend> make_cuda_backend(int device);

}  // namespace llmserve::backend
