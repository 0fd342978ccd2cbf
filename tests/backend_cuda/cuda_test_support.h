// Shared by the CUDA tests: the one backend of the test binary and the skip rule for machines
// without a GPU.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "backend/cuda/cuda_backend.h"
#include "tests/common/test_paths.h"

namespace llmserve::testing {

// The repository root: $LLMSERVE_SOURCE_DIR when set (a prebuilt test binary run from another
// checkout, as scripts/gpu-check.sh does), else the one the binary was built from.
inline std::filesystem::path repository_dir() {
    if (const char* env = std::getenv("LLMSERVE_SOURCE_DIR"); env != nullptr && *env != '\0')
        return env;
    return source_dir();
}

// Tests that need a GPU derive from this: SetUp skips them with "not run: no CUDA device" when the
// runtime sees none, and otherwise hands them the CUDA backend on device 0, created once per
// process (a cuBLAS handle is slow to create).
class CudaDeviceTest : public ::testing::Test {
  protected:
    void SetUp() override {
        const backend::CudaDevices devices = backend::probe_cuda_devices();
        if (devices.count == 0)
            GTEST_SKIP() << "not run: no CUDA device (" << devices.detail << ")";
        static const std::shared_ptr<backend::Backend> shared = backend::make_cuda_backend(0);
        cuda = shared;
    }
    std::shared_ptr<backend::Backend> cuda;
};

}  // namespace llmserve::testing
