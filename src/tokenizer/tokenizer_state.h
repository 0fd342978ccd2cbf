// What a loaded Tokenizer holds (shared, immutable apart from the internally locked piece cache).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/string_hash.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::tokenizer {

enum class TokenKind : std::uint8_t {
    kMissing,  // an id below vocab_size() that names no token
    kRegular,  // a BPE vocabulary token
    kAdded,    // an added token not marked special (still split out by encode())
    kSpecial,  // an added token marked special
};

struct AddedToken {
    std::string content;
    TokenId id;
};

using TokenIdsByText =
    std::unordered_map<std::string, TokenId, TransparentStringHash, std::equal_to<>>;

struct TokenizerState {
    TokenizerState(std::array<TokenId, 256> byte_ids, MergeMap merges)
        : bpe(byte_ids, std::move(merges)) {}

    // Token `id`'s bytes are token_arena[token_offsets[id], token_offsets[id + 1]).
    std::string token_arena;
    std::vector<std::uint32_t> token_offsets;  // vocab_size + 1 entries
    std::vector<TokenKind> token_kinds;        // vocab_size entries
    TokenIdsByText ids_by_text;                // vocabulary spellings and added tokens' contents
    std::vector<AddedToken> added_tokens;      // what encode() splits out of the text
    BpeModel bpe;
};

}  // namespace llmserve::tokenizer
