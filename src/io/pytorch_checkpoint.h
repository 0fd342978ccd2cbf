// pytorch_model.bin: the zip archive torch.save writes (PyTorch >= 1.6), read without PyTorch and
// without ever running the pickle's code. Only what a state dict needs is accepted: a dict of
// name -> tensor, tensors rebuilt by torch._utils._rebuild_tensor_v2 (or _rebuild_parameter)
// over float32/float16/bfloat16 storages stored in the archive. Any other import the pickle asks
// for (os.system, builtins.eval, ...) is refused by name.
#pragma once

#include "io/safetensors.h"
#include "io/weight_store.h"

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace llmserve::io {

struct PytorchCheckpoint {
    // Float tensors in the pickle's order; `data` points into the parsed buffer, `file` = source.
    // Tensors that share a storage (tied weights) point at the same bytes.
    std::vector<TensorView> tensors;
    // Integer and bool buffers (attention masks saved by older transformers) have no DType;
    // they are left out and named here so that index files listing them still check out.
    std::vector<std::string> skipped;
};

// Parses a torch.save checkpoint held in `file`. Errors name `source` and the entry or tensor at
// fault:
//  - kUnsupported: a pickle import outside the allow-list ("refusing to load <source>: pickle
//    references 'posix.system', which is not allowed in a checkpoint"); the pre-1.6 legacy
//    format; compressed zip entries; non-contiguous strides; float64 tensors; big-endian data.
//  - kCorruptData: a damaged zip or pickle; a tensor reaching past its storage; a missing
//    storage record; duplicate tensor names; a pickle that is not a dict of tensors.
//  - kResourceExhausted: the pickle exceeds the unpickler's limits.
// Only llmserve::Error escapes, whatever the bytes (the fuzzer checks this).
PytorchCheckpoint read_pytorch_checkpoint(std::span<const std::byte> file,
                                          const std::string& source);

// read_pytorch_checkpoint(file, source).tensors.
std::vector<TensorView> parse_pytorch_checkpoint(std::span<const std::byte> file,
                                                 const std::string& source);

// All tensors of `dir`'s pytorch_model.bin, or of the shards that its
// pytorch_model.bin.index.json lists ("weight_map": tensor -> file; every listed shard must exist
// inside `dir` and hold the tensors mapped to it), memory-mapped into a WeightStore.
// kNotFound naming `dir` when neither file exists; otherwise the errors above, MappedFile::open's,
// and kCorruptData naming the index for an inconsistent one.
WeightStore open_pytorch_directory(const std::filesystem::path& dir);

inline constexpr const char* kPytorchWeightsName = "pytorch_model.bin";
inline constexpr const char* kPytorchIndexName = "pytorch_model.bin.index.json";

}  // namespace llmserve::io
