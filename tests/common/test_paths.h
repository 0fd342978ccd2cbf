// Where tests find their data: $LLMSERVE_FIXTURES overrides the vendored fixtures so that the same
// suite runs against any folder of the same layout.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace llmserve::testing {

inline std::filesystem::path source_dir() {
    return LLMSERVE_SOURCE_DIR;
}

// $LLMSERVE_FIXTURES when set and not empty, else the vendored tests/fixtures.
inline std::filesystem::path fixtures_dir() {
    if (const char* env = std::getenv("LLMSERVE_FIXTURES"); env != nullptr && *env != '\0')
        return env;
    return source_dir() / "tests" / "fixtures";
}

inline std::filesystem::path embedded_model_dir() {
    return source_dir() / "models" / "gpt2-brown-mini";
}

// Sub-folders of `dir` (sorted); empty when `dir` does not exist.
inline std::vector<std::filesystem::path> subdirectories(const std::filesystem::path& dir) {
    std::vector<std::filesystem::path> out;
    if (!std::filesystem::is_directory(dir)) return out;
    for (const auto& entry : std::filesystem::directory_iterator(dir))
        if (entry.is_directory()) out.push_back(entry.path());
    std::sort(out.begin(), out.end());
    return out;
}

// The whole file, byte for byte; empty when it cannot be read.
inline std::string read_text(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace llmserve::testing
