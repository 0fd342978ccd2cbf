// The entry point of libllmserve_cuda.so (see backend/cuda_module.h): the CUDA backend's functions
// as one table.
#include "backend/cuda_module.h"

extern "C" __attribute__((visibility("default"))) const llmserve::backend::CudaModule*
llmserve_cuda_module() {
    using namespace llmserve::backend;
    static const CudaModule module{CudaModuleStamp::of_this_build(LLMSERVE_VERSION),
                                   &probe_cuda_devices, &describe_cuda_device, &make_cuda_backend};
    return &module;
}
