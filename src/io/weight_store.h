// All tensors of a Hugging Face model directory, memory-mapped and looked up by normalised name.
#pragma once

#include "io/mapped_file.h"
#include "io/safetensors.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::io {

// All tensors of a Hugging Face model directory: model.safetensors, or the shards listed in
// model.safetensors.index.json ("weight_map": tensor -> file; every listed file must exist and
// every mapped tensor must be found in the named shard). Files stay mapped for the store's
// lifetime. Names are normalised: a leading "transformer." is stripped (GPT2LMHeadModel keys) so
// callers ask for "h.0.ln_1.weight", "wte.weight", "lm_head.weight". Duplicate names after
// normalisation are an error. Buffers saved with the weights (the hub layout's "h.N.attn.bias"
// causal masks) are kept like any tensor; the model loader decides what to ignore.
// Move-only; const member functions may be called from several threads at once.
class WeightStore {
  public:
    // kNotFound if `dir` holds no weights file, naming dir and the files looked for; otherwise
    // the errors of MappedFile::open and parse_safetensors, and kCorruptData/kNotFound for an
    // inconsistent index (naming the index file, the tensor and the shard).
    static WeightStore open_directory(const std::filesystem::path& dir);

    // nullptr when absent. `name` is the normalised name.
    const TensorView* find(std::string_view name) const;
    // The tensor, checked: kNotFound "<dir>: tensor 'h.3.attn.c_attn.weight' is missing";
    // kCorruptData on a shape mismatch naming the file, tensor, expected and actual shape.
    const TensorView& require(std::string_view name,
                              std::span<const std::int64_t> expected_shape) const;
    std::vector<std::string> names() const;  // normalised, sorted
    std::size_t total_bytes() const;         // bytes of tensor data across all files
    const std::filesystem::path& directory() const { return directory_; }

    // Adds tensors read from another format (the pytorch_model.bin reader uses this); takes
    // ownership of the mapping that `tensors` point into. Every tensor's data must lie inside
    // `file.bytes()` (kInternal otherwise); names are normalised and checked for duplicates
    // against everything already in the store (kCorruptData).
    void add_file(MappedFile file, std::vector<TensorView> tensors);
    // Adds one tensor whose data the store keeps in `bytes` (a tensor rewritten at load, e.g.
    // rows reordered); `tensor.data` is set to them. Names are checked as add_file does.
    void add_owned(std::vector<std::byte> bytes, TensorView tensor);

    // An empty store for `dir`, to be filled with add_file (other formats' readers).
    explicit WeightStore(std::filesystem::path dir) : directory_(std::move(dir)) {}

  private:
    std::filesystem::path directory_;
    std::vector<MappedFile> files_;  // mappings never move, so the views below stay valid
    std::vector<std::vector<std::byte>> owned_;  // heap buffers survive the vector's moves
    std::map<std::string, TensorView, std::less<>> tensors_;  // normalised name -> view
    std::size_t total_bytes_ = 0;
};

}  // namespace llmserve::io
