// Helpers shared by the tokenizer tests: where fixtures live, JSONL reading, small hand-made
// tokenizers and scratch directories.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::tokenizer::testing {

inline std::filesystem::path fixtures_dir() {
    const char* env = std::getenv("LLMSERVE_FIXTURES");
    return env != nullptr && *env != '\0'
               ? std::filesystem::path(env)
               : std::filesystem::path(LLMSERVE_SOURCE_DIR "/tests/fixtures");
}

inline std::filesystem::path embedded_model_dir() {
    return LLMSERVE_SOURCE_DIR "/models/gpt2-brown-mini";
}

// One JSON value per non-empty line; an unreadable file or bad line fails the calling test.
inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path) {
    std::ifstream stream(path);
    EXPECT_TRUE(stream.is_open()) << "cannot open " << path;
    std::vector<nlohmann::json> rows;
    std::string line;
    while (std::getline(stream, line)) {
        if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
    }
    EXPECT_FALSE(rows.empty()) << path << " has no rows";
    return rows;
}

// A tokenizer.json whose vocabulary is the 256 byte tokens (id = byte value) followed by `extra`
// (raw bytes, ids 256, 257, ...), with `merges` given as raw-byte pairs.
inline nlohmann::json byte_level_tokenizer_json(
    const std::vector<std::string>& extra,
    const std::vector<std::pair<std::string, std::string>>& merges,
    nlohmann::json added_tokens = nlohmann::json::array()) {
    nlohmann::json vocab = nlohmann::json::object();
    int next_id = 0;
    for (int byte = 0; byte < 256; ++byte) {
        vocab[bytes_to_vocab_text(std::string(1, static_cast<char>(byte)))] = next_id++;
    }
    for (const std::string& token : extra) vocab[bytes_to_vocab_text(token)] = next_id++;
    nlohmann::json merge_list = nlohmann::json::array();
    for (const auto& [left, right] : merges) {
        merge_list.push_back(bytes_to_vocab_text(left) + " " + bytes_to_vocab_text(right));
    }
    return {{"version", "1.0"},
            {"added_tokens", std::move(added_tokens)},
            {"normalizer", nullptr},
            {"pre_tokenizer",
             {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
            {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
}

// A fresh directory removed again at the end of the test.
class ScratchDir {
  public:
    ScratchDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "llmserve-tokenizer-test-XXXXXX").string();
        EXPECT_NE(::mkdtemp(pattern.data()), nullptr) << "cannot create " << pattern;
        path_ = pattern;
    }
    ~ScratchDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;

    const std::filesystem::path& path() const { return path_; }

    std::filesystem::path write(const std::string& name, std::string_view content) const {
        const std::filesystem::path file = path_ / name;
        std::ofstream(file, std::ios::binary) << content;
        return file;
    }

  private:
    std::filesystem::path path_;
};

}  // namespace llmserve::tokenizer::testing
