// Process and system memory figures (Linux /proc and cgroup v2), for /metrics and for refusing
// to load a model that cannot fit.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>

#include "backend/backend.h"

namespace llmserve::server {

// Resident set size of this process (VmRSS), or nullopt when /proc is unavailable.
std::optional<std::uint64_t> resident_memory_bytes();

// Memory the process can still use: MemAvailable, lowered to what the cgroup v2 limit leaves
// (memory.max - memory.current) when the process runs in a memory-limited container.
std::optional<std::uint64_t> available_memory_bytes();

// Memory a model directory's weights take once loaded in `format`: the weight files' size, scaled
// from the stored width (config.json "torch_dtype"/"dtype": 2 bytes for float16 / bfloat16, else
// 4) to the computed one (f32 4, f16 / bf16 2, q8 34 bytes per 32 weights; auto as stored).
// Throws Error(kNotFound) naming the directory when it holds no weight files.
std::uint64_t estimate_model_memory_bytes(const std::filesystem::path& model_dir,
                                          backend::WeightFormat format);

// Throws Error(kResourceExhausted) with both figures when `needed` exceeds `available`.
void check_model_fits(const std::filesystem::path& model_dir, std::uint64_t needed,
                      std::uint64_t available);

}  // namespace llmserve::server
