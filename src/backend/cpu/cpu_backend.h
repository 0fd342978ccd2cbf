// The CPU backend with a chosen kernel tier (make_cpu_backend in backend.h uses default_isa()).
#pragma once

#include <memory>

#include "backend/backend.h"
#include "backend/cpu/cpu_features.h"

namespace llmserve::backend::cpu {

// `threads` worker threads (0 = one per core) running the `isa` kernels; kUnsupported when this
// CPU lacks `isa`.
std::unique_ptr<Backend> make_cpu_backend(int threads, Isa isa);

}  // namespace llmserve::backend::cpu
