#include "server/system_memory.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "common/error.h"

namespace llmserve::server {
namespace {

// The value in kB of a "Name:   123 kB" line of a /proc file, in bytes.
std::optional<std::uint64_t> proc_kilobytes(const char* file, std::string_view name) {
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
        if (line.starts_with(name) && line.size() > name.size() && line[name.size()] == ':') {
            std::istringstream fields(line.substr(name.size() + 1));
            std::uint64_t kilobytes = 0;
            if (fields >> kilobytes) return kilobytes * 1024;
        }
    }
    return std::nullopt;
}

std::optional<std::uint64_t> read_number(const char* file) {
    std::ifstream in(file);
    std::uint64_t value = 0;
    if (in >> value) return value;
    return std::nullopt;  // missing, or "max" (no limit)
}

std::string human_bytes(std::uint64_t bytes) {
    return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

bool is_weight_file(const std::filesystem::path& path) {
    const std::string name = path.filename().string();
    return name.ends_with(".safetensors") ||
           (name.starts_with("pytorch_model") && name.ends_with(".bin"));
}

bool stored_in_16_bits(const std::filesystem::path& model_dir) {
    std::ifstream in(model_dir / "config.json");
    const auto config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!config.is_object()) return false;  // the model loader reports a bad config.json
    for (const char* key : {"torch_dtype", "dtype"}) {
        const auto it = config.find(key);
        if (it != config.end() && it->is_string() && (*it == "float16" || *it == "bfloat16")) {
            return true;
        }
    }
    return false;
}

}  // namespace

std::optional<std::uint64_t> resident_memory_bytes() {
    return proc_kilobytes("/proc/self/status", "VmRSS");
}

std::optional<std::uint64_t> available_memory_bytes() {
    std::optional<std::uint64_t> available = proc_kilobytes("/proc/meminfo", "MemAvailable");
    const auto limit = read_number("/sys/fs/cgroup/memory.max");
    const auto used = read_number("/sys/fs/cgroup/memory.current");
    if (limit && used) {
        const std::uint64_t left = *limit > *used ? *limit - *used : 0;
        available = available ? std::min(*available, left) : left;
    }
    return available;
}

std::uint64_t estimate_model_memory_bytes(const std::filesystem::path& model_dir,
                                          backend::WeightFormat format) {
    std::uint64_t file_bytes = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(model_dir, ec)) {
        if (entry.is_regular_file(ec) && is_weight_file(entry.path())) {
            file_bytes += entry.file_size(ec);
        }
    }
    if (file_bytes == 0) {
        fail(ErrorCode::kNotFound,
             "model directory {} holds no weight files (*.safetensors or pytorch_model*.bin)",
             model_dir.string());
    }
    // Bytes per 32 weights, stored and computed.
    const std::uint64_t stored = stored_in_16_bits(model_dir) ? 64 : 128;
    std::uint64_t computed = stored;
    switch (format) {
        case backend::WeightFormat::kAuto:
            break;
        case backend::WeightFormat::kF32:
            computed = 128;
            break;
        case backend::WeightFormat::kF16:
        case backend::WeightFormat::kBF16:
            computed = 64;
            break;
        case backend::WeightFormat::kQ8:
            computed = 34;  // 32 int8 values and an f16 scale
            break;
        case backend::WeightFormat::kQ4:
            computed = 18;  // 32 4-bit values and an f16 scale
            break;
    }
    return file_bytes * computed / stored;
}

void check_model_fits(const std::filesystem::path& model_dir, std::uint64_t needed,
                      std::uint64_t available) {
    if (needed > available) {
        fail(ErrorCode::kResourceExhausted,
             "refusing to load {}: it needs about {} of memory but only {} is available; free "
             "memory, raise the container's limit, or choose a smaller model",
             model_dir.string(), human_bytes(needed), human_bytes(available));
    }
}

}  // namespace llmserve::server
