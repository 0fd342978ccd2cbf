// Randomly initialised models of published shapes, for benchmarks: no checkpoint needed.
#pragma once

#include <string_view>

#include "model/model.h"

namespace llmserve::model {

// "gpt2" (124M), "gpt2-medium" (355M), "gpt2-large" (774M), "gpt2-xl" (1.5B), "qwen2.5-0.5b",
// "smollm2-135m", "llama-3.2-1b": the configuration their config.json gives; kInvalidArgument
// otherwise.
ModelConfig published_shape(std::string_view name);

// Weights drawn uniformly with std 0.02 (GPT-2's and Llama's initialisation scale), stored as
// `dtype`, held in anonymous memory.
std::shared_ptr<const Model> synthetic_model(const ModelConfig& config, DType dtype,
                                             const LoadOptions& options, std::string name);

}  // namespace llmserve::model
