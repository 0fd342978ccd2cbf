// The weights of a Hugging Face model directory, in whichever format it holds them.
#pragma once

#include <filesystem>

#include "io/weight_store.h"

namespace llmserve::io {

// safetensors (model.safetensors or its sharded index) when present, as transformers prefers them;
// else pytorch_model.bin (or its sharded index). kNotFound naming the directory and the four file
// names otherwise.
WeightStore open_checkpoint_directory(const std::filesystem::path& dir);

}  // namespace llmserve::io
