// Randomly initialised GPT-2 models of the published shapes, for benchmarks: no checkpoint needed.
#pragma once

#include <string_view>

#include "model/gpt2.h"

namespace llmserve::model {

// "gpt2" (124M), "gpt2-medium" (355M), "gpt2-large" (774M), "gpt2-xl" (1.5B); kInvalidArgument
// otherwise.
ModelConfig published_shape(std::string_view name);

// Weights drawn uniformly with GPT-2's initialisation scale (std 0.02), stored as `dtype`, held in
// anonymous memory.
std::shared_ptr<const Gpt2Model> synthetic_model(const ModelConfig& config, DType dtype,
                                                 const LoadOptions& options, std::string name);

}  // namespace llmserve::model
