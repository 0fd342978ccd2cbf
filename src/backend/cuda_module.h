// The CUDA backend as a module loaded at run time (libllmserve_cuda.so, built beside the binary
// when nvcc is found), so that a CPU-only server never maps the CUDA runtime or cuBLAS. The module
// hands the host binary this table. Binary and module must come from the same build: the table
// carries the version and the sizes of the types that cross the boundary, and a module whose stamp
// differs is refused by name (a cheap check against mixed installs, not a proof of ABI
// compatibility).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "backend/cuda/cuda_backend.h"

namespace llmserve::backend {

struct CudaModuleStamp {
    const char* version;
    std::size_t backend_size, options_size, devices_size;

    static constexpr CudaModuleStamp of_this_build(const char* version) {
        return {version, sizeof(Backend), sizeof(CudaOptions), sizeof(CudaDevices)};
    }
};

struct CudaModule {
    CudaModuleStamp stamp;
    CudaDevices (*probe_devices)();
    std::string (*describe_device)(int device);
    std::unique_ptr<Backend> (*make_backend)(int device, const CudaOptions& options);
};

// The module's one exported symbol: extern "C" const CudaModule* llmserve_cuda_module();
inline constexpr const char* kCudaModuleEntryPoint = "llmserve_cuda_module";
inline constexpr const char* kCudaModuleFileName = "libllmserve_cuda.so";

}  // namespace llmserve::backend
