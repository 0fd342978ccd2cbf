// Helpers shared by the backend tests: random data, tensors over test-owned memory, and a loop
// over every kernel tier this CPU supports.
#pragma once

#include <gtest/gtest.h>

#include <random>
#include <span>
#include <string>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels.h"
#include "io/safetensors.h"

namespace llmserve::backend::cpu::testing {

inline std::vector<float> random_floats(std::size_t count, float low, float high, unsigned seed) {
    std::mt19937 engine(seed);
    std::uniform_real_distribution<float> uniform(low, high);
    std::vector<float> values(count);
    for (float& v : values) v = uniform(engine);
    return values;
}

// A [rows, cols] tensor viewing `bytes` (which must outlive it).
inline io::TensorView tensor_view(std::span<const std::byte> bytes, DType dtype, std::int64_t rows,
                                  std::int64_t cols) {
    io::TensorView view;
    view.name = "test.weight";
    view.dtype = dtype;
    view.shape = {rows, cols};
    view.data = bytes;
    view.file = "<test>";
    return view;
}

// Every tier this CPU supports, lowest first; each test runs its checks once per tier.
inline std::vector<Isa> tiers() {
    return supported_isas();
}

inline std::string tier_name(Isa isa) {
    return "isa " + std::string(to_string(isa));
}

}  // namespace llmserve::backend::cpu::testing
