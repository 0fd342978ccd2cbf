// What a loaded Tokenizer holds (shared, immutable apart from the internally locked piece cache).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
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

struct TokenizerState {
    TokenizerState(std::array<TokenId, 256> byte_ids, MergeTable merges)
        : bpe(byte_ids, std::move(merges)) {}

    // Token `id`'s bytes are token_arena[token_offsets[id], token_offsets[id + 1]).
    std::string token_arena;
    std::vector<std::uint32_t> token_offsets;  // vocab_size + 1 entries
    std::vector<TokenKind> token_kinds;        // vocab_size entries
    // token_id() indexes, sorted by the tokens' bytes: a few hundred KB where a hash map of
    // spellings took ~4 MB for GPT-2's vocabulary.
    std::vector<TokenId> regular_ids_by_bytes;
    std::vector<TokenId> added_ids_by_content;  // added tokens, which take precedence
    std::vector<AddedToken> added_tokens;       // what encode() splits out of the text
    BpeModel bpe;

    std::string_view token_bytes(TokenId id) const {
        return std::string_view(token_arena)
            .substr(token_offsets[id], token_offsets[id + 1] - token_offsets[id]);
    }
};

}  // namespace llmserve::tokenizer
