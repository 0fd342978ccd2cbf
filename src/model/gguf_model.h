// A model from a GGUF file (llama.cpp's format): the ModelConfig spec from its `{arch}.*`
// metadata, the generation defaults from its tokenizer metadata, and its tensors under
// llama.cpp's names (WeightNaming::kGguf), with the Q/K rows llama.cpp's converter permutes for
// `llama` files put back in Hugging Face order.
#pragma once

#include <filesystem>

#include "backend/backend.h"
#include "io/gguf.h"
#include "io/weight_store.h"
#include "model/config.h"

namespace llmserve::model {

// The architectures served from GGUF files: "gpt2, llama, qwen2, qwen3".
std::string supported_gguf_architectures();

// The spec of `file` (general.architecture and its `{arch}.*` keys). kUnsupported naming the
// architecture or key when the file asks for something the forward pass cannot do; kCorruptData
// / kNotFound naming the file and key for bad or missing values.
ModelConfig gguf_model_config(const io::GgufFile& file);

// The token ids of the spec (GGUF files hold no generation_config.json).
GenerationDefaults gguf_generation_defaults(const ModelConfig& config);

// The tensors of `mapped` in a WeightStore (named after the file), ready for Model::from_weights
// with `config`: the mapping moves into the store; permuted Q/K rows are reordered into copies.
io::WeightStore gguf_weights(io::GgufMapped mapped, const ModelConfig& config);

// Bytes the weights of a GGUF file take once loaded as `format` (auto: Q8_0, Q5_0, Q5_1, Q5_K and
// Q6_K as q8 blocks, 34 bytes per 32 weights (36 with Q5_1's and Q5_K's biases); Q4_0 and Q4_K as
// q4 blocks, 18 (20);
// float types as stored).
std::uint64_t gguf_memory_estimate(const std::filesystem::path& file, backend::WeightFormat format);

}  // namespace llmserve::model
