// Helpers shared by the tokenizer tests: JSONL reading and small hand-made tokenizers (fixture
// paths and scratch directories come from tests/common).
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/common/scratch_dir.h"
#include "tests/common/test_paths.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::tokenizer::testing {

using llmserve::testing::embedded_model_dir;
using llmserve::testing::fixtures_dir;
using llmserve::testing::ScratchDir;

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

}  // namespace llmserve::tokenizer::testing
