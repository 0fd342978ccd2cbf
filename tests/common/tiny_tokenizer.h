// A tokenizer for the tokenizer-less Llama-family fixtures (vocabulary 1000), so that they can be
// served and run from the CLI: byte-level BPE in tokenizer.json's layout with 3 special tokens
// (<pad> 0, <bos> 1, <eos> 2), the 256 byte tokens, then merges of pairs of letters, digits and
// the space symbol up to the model's vocabulary size.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/common/test_paths.h"

namespace llmserve::testing {

// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the others for
// U+0100 onwards in byte order.
inline std::string byte_symbol(unsigned byte) {
    const bool printable =
        (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
    static const std::vector<unsigned> others = [] {
        std::vector<unsigned> list;
        for (unsigned b = 0; b < 256; ++b)
            if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE))
                list.push_back(b);
        return list;
    }();
    unsigned code = byte;
    if (!printable)
        code = 256 + static_cast<unsigned>(std::find(others.begin(), others.end(), byte) -
                                           others.begin());
    std::string utf8;
    if (code < 0x80) {
        utf8 += static_cast<char>(code);
    } else {
        utf8 += static_cast<char>(0xC0 | (code >> 6));
        utf8 += static_cast<char>(0x80 | (code & 0x3F));
    }
    return utf8;
}

// A byte-level BPE tokenizer of exactly `vocab_size` ids: <pad> 0, <bos> 1, <eos> 2, the byte
// tokens, then merges of pairs of letters, digits and the space symbol.
inline nlohmann::json tiny_tokenizer(int vocab_size) {
    using nlohmann::json;
    json vocab = json::object();
    json merges = json::array();
    int id = 3;
    for (unsigned byte = 0; byte < 256; ++byte) vocab[byte_symbol(byte)] = id++;
    std::vector<std::string> symbols = {byte_symbol(' ')};
    for (char c = 'a'; c <= 'z'; ++c) symbols.push_back(std::string(1, c));
    for (char c = '0'; c <= '9'; ++c) symbols.push_back(std::string(1, c));
    for (const std::string& left : symbols)
        for (const std::string& right : symbols) {
            if (id == vocab_size) break;
            vocab[left + right] = id++;
            merges.push_back(left + " " + right);
        }
    json added = json::array();
    const char* specials[] = {"<pad>", "<bos>", "<eos>"};
    for (int i = 0; i < 3; ++i)
        added.push_back({{"id", i},
                         {"content", specials[i]},
                         {"special", true},
                         {"lstrip", false},
                         {"rstrip", false},
                         {"single_word", false},
                         {"normalized", false}});
    return {{"version", "1.0"},
            {"added_tokens", added},
            {"normalizer", nullptr},
            {"pre_tokenizer",
             {{"type", "ByteLevel"},
              {"add_prefix_space", false},
              {"trim_offsets", true},
              {"use_regex", true}}},
            {"post_processor", nullptr},
            {"decoder",
             {{"type", "ByteLevel"},
              {"add_prefix_space", true},
              {"trim_offsets", true},
              {"use_regex", true}}},
            {"model",
             {{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"continuing_subword_prefix", ""},
              {"end_of_word_suffix", ""},
              {"fuse_unk", false},
              {"vocab", vocab},
              {"merges", merges}}}};
}

// Copies the model files of `fixture` (not its reference logits) to `dir` and adds the tokenizer.
inline void copy_with_tiny_tokenizer(const std::filesystem::path& fixture,
                                     const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    fs::create_directories(dir);
    for (const auto& entry : fs::directory_iterator(fixture))
        if (entry.path().extension() != ".f32" && entry.path().filename() != "reference.json")
            fs::copy_file(entry.path(), dir / entry.path().filename());
    const auto config = nlohmann::json::parse(read_text(dir / "config.json"));
    std::ofstream(dir / "tokenizer.json") << tiny_tokenizer(config.at("vocab_size").get<int>());
}

}  // namespace llmserve::testing
