// Which backend runs the model: the CPU, or a CUDA device when this binary was built with the CUDA
// backend and one is visible.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "backend/backend.h"

namespace llmserve::backend {

struct DeviceChoice {
    std::shared_ptr<Backend> backend;
    std::string reason;  // e.g. "DEVICE=auto: no CUDA device visible (...), using the CPU"
};

struct DeviceOptions {
    int threads = 0;          // CPU worker threads (0 = one per core), used by the CPU backend
    bool cuda_graphs = true;  // the CUDA backend replays decode passes as CUDA graphs
};

// device: "auto" (CUDA device 0 when built with CUDA and a device is visible, else the CPU), "cpu",
// "cuda" (= "cuda:0") or "cuda:N". Throws Error(kUnavailable) when CUDA is asked for but not built
// or no such device is visible, Error(kInvalidArgument, param "device") for any other string.
DeviceChoice select_device(std::string_view device, const DeviceOptions& options);

// True when this binary contains the CUDA backend.
bool cuda_compiled();

}  // namespace llmserve::backend
