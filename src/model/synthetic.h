// Randomly initialised models of published shapes, for benchmarks: no checkpoint needed.
#pragma once

#include <string_view>

#include "model/model.h"

namespace llmserve::model {

// "gpt2" (124M), "gpt2-medium" (355M), "gpt2-large" (774M), "gpt2-xl" (1.5B), "qwen2.5-0.5b",
// "smollm2-135m", "llama-3.2-1b": the configuration their config.json gives; kInvalidArgument
// otherwise.
ModelConfig published_shape(std::string_view name);

// kQ4_K_M: llama.cpp's Q4_K_M mixture of Q4_K and Q6_K (Q6_K for the output projection, and for
// attn_v and ffn_down in the layers llama.cpp's use_more_bits() picks), whatever `dtype` says.
enum class SyntheticMix { kUniform, kQ4_K_M };

// Weights drawn uniformly with std 0.02 (GPT-2's and Llama's initialisation scale), stored as
// `dtype`, held in anonymous memory. K-quant blocks are random but valid (random values and
// scales of a similar magnitude), not quantized from such draws; K-quant matrices whose rows are
// not whole 256-value super-blocks take Q5_0 (for Q4_K), Q5_1 (Q5_K) or Q8_0 (Q6_K) instead,
// as llama.cpp's quantizer falls back to a 32-value type.
std::shared_ptr<const Model> synthetic_model(const ModelConfig& config, DType dtype,
                                             const LoadOptions& options, std::string name,
                                             SyntheticMix mix = SyntheticMix::kUniform);

}  // namespace llmserve::model
