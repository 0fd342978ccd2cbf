// The Hugging Face cache layout (shared with huggingface_hub). Internal to src/hub.
#pragma once

#include "hub/hub.h"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::hub {

inline constexpr const char* kConfigFile = "config.json";
inline constexpr const char* kSafetensorsFile = "model.safetensors";
inline constexpr const char* kSafetensorsIndex = "model.safetensors.index.json";
inline constexpr const char* kPytorchFile = "pytorch_model.bin";
inline constexpr const char* kPytorchIndex = "pytorch_model.bin.index.json";

// "models--org--name" for "org/name".
std::string repo_folder_name(std::string_view repo_id);

// A 40-character lower-case hex string: a git commit id.
bool is_commit_hash(std::string_view revision);

// The distinct shard files an index's "weight_map" names, in order of first appearance.
// kCorruptData naming `index_path` when the JSON is malformed or names a file outside the
// directory.
std::vector<std::string> read_index_shards(const std::filesystem::path& index_path);

// What looking for a model in one cache root found.
struct CacheLookup {
    std::optional<std::filesystem::path> snapshot = {};  // complete snapshot, when there is one
    std::filesystem::path incomplete_snapshot = {};      // one that exists but lacks files
    std::vector<std::string> missing = {};               // what that one lacks
};

// snapshots/<commit> of `model`'s revision under `cache_root` (refs/<revision> gives the commit; a
// commit hash is used directly); nullopt when the ref or the snapshot is missing or damaged.
std::optional<std::filesystem::path> cached_snapshot_dir(const std::filesystem::path& cache_root,
                                                         const ModelRef& model);

// The .gguf names among `files` that `selector` picks: itself when it names a .gguf file; for a
// quantization tag, those holding it as a word, case-insensitively ("model-Q4_K_M.gguf" and
// "model.q4_k_m.gguf" for Q4_K_M, not "model-Q4_K_M_L.gguf" or "model-XQ4_K_M.gguf").
std::vector<std::string> matching_gguf_files(const std::vector<std::string>& files,
                                             std::string_view selector);

// Looks `model` up under `cache_root`: refs/<revision> gives the commit (a commit hash is used
// directly), snapshots/<commit> must hold a loadable model. Touches no network.
CacheLookup find_cached_snapshot(const std::filesystem::path& cache_root, const ModelRef& model);

}  // namespace llmserve::hub
