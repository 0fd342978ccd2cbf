// Device selection, on whatever machine runs it: "auto" and "cuda" must agree about whether a CUDA
// device is usable, the CPU fallback must say why, and malformed names must be refused.
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>

#include "backend/device.h"
#include "common/error.h"

namespace llmserve::backend {
namespace {

#ifdef LLMSERVE_CUDA_MODULE_PATH
// The CUDA module is built beside llmserve, not beside this test: point the loader at it.
[[maybe_unused]] const bool cuda_module_located =
    setenv("LLMSERVE_CUDA_MODULE", LLMSERVE_CUDA_MODULE_PATH, 0) == 0;
#endif

bool contains(const std::string& text, const std::string& fragment) {
    return text.find(fragment) != std::string::npos;
}

TEST(DeviceSelection, CpuIsAlwaysAvailable) {
    const DeviceChoice choice = select_device("cpu", {.threads = 2});
    ASSERT_NE(choice.backend, nullptr);
    EXPECT_EQ(choice.backend->name(), "cpu");
    EXPECT_EQ(choice.backend->threads(), 2);
    EXPECT_EQ(choice.reason, "DEVICE=cpu");
}

TEST(DeviceSelection, AutoAndCudaAgree) {
    const DeviceChoice automatic = select_device("auto", {.threads = 1});
    ASSERT_NE(automatic.backend, nullptr);
    std::cout << automatic.reason << "\n";
    EXPECT_TRUE(automatic.reason.starts_with("DEVICE=auto: ")) << automatic.reason;
    if (automatic.backend->name() == "cuda:0") {
        EXPECT_TRUE(cuda_compiled());
        EXPECT_TRUE(contains(automatic.reason, "using cuda:0")) << automatic.reason;
        EXPECT_TRUE(contains(automatic.reason, "CUDA graphs on")) << automatic.reason;
        const DeviceChoice cuda = select_device("cuda", {.threads = 1});
        EXPECT_EQ(cuda.backend->name(), "cuda:0");
        EXPECT_EQ(select_device("cuda:0", {.threads = 1}).backend->name(), "cuda:0");
        return;
    }
    EXPECT_EQ(automatic.backend->name(), "cpu");
    EXPECT_TRUE(contains(automatic.reason, "using the CPU")) << automatic.reason;
    if (cuda_compiled()) {
        EXPECT_TRUE(contains(automatic.reason, "no CUDA driver") ||
                    contains(automatic.reason, "no CUDA device visible") ||
                    contains(automatic.reason, "cuda:0 could not be used"))
            << automatic.reason;
    } else {
        EXPECT_TRUE(contains(automatic.reason, "built without CUDA")) << automatic.reason;
    }
    for (const char* name : {"cuda", "cuda:0"}) {
        try {
            select_device(name, {.threads = 1});
            ADD_FAILURE() << name << " succeeded although auto fell back to the CPU";
        } catch (const Error& error) {
            EXPECT_EQ(error.code(), ErrorCode::kUnavailable);
            EXPECT_TRUE(contains(error.what(), std::string("DEVICE=") + name)) << error.what();
        }
    }
}

TEST(DeviceSelection, AbsentCudaDeviceIsUnavailable) {
    try {
        select_device("cuda:4096", {.threads = 1});
        ADD_FAILURE() << "cuda:4096 was accepted";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kUnavailable);
        EXPECT_TRUE(contains(error.what(), "DEVICE=cuda:4096")) << error.what();
    }
}

TEST(DeviceSelection, RefusesMalformedNames) {
    for (const char* name : {"", "gpu", "CPU", "cuda:", "cuda:-1", "cuda:1x", "cuda0", "auto "}) {
        try {
            select_device(name, {.threads = 1});
            ADD_FAILURE() << "'" << name << "' was accepted";
        } catch (const Error& error) {
            EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument) << name;
            EXPECT_EQ(error.param(), "device");
            EXPECT_TRUE(contains(error.what(), std::string("'") + name + "'")) << error.what();
        }
    }
}

}  // namespace
}  // namespace llmserve::backend
