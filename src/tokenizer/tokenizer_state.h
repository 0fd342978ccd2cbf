// What a loaded Tokenizer holds (shared, immutable apart from the internally locked piece cache).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::tokenizer {

enum class TokenKind : std::uint8_t {
    kMissing,  // an id below vocab_size() that names no token
    kRegular,  // a BPE vocabulary token
    kAdded,    // an added token not marked special (still split out by encode())
    kSpecial,  // an added token marked special
};

// Which of the hand-written pre-tokenizers, if any, is the whole pre-tokenizer (the common
// cases, run without the generic pipeline's per-piece indirection).
enum class FastPreTokenizer : std::uint8_t { kNone, kGpt2, kLlama3 };

struct TokenizerState {
    TokenizerState(InitialSymbols symbols, MergeTable merges,
                   std::unordered_map<std::string, TokenId, TransparentStringHash, std::equal_to<>>
                       whole_pieces)
        : bpe(std::move(symbols), std::move(merges), std::move(whole_pieces)) {}

    // Byte-level vocabularies: tokens are raw bytes and decoding concatenates them. Otherwise
    // tokens keep their vocabulary spelling and `decoder` turns them into text.
    bool byte_level = true;
    // Token `id`'s decoder input is token_arena[token_offsets[id], token_offsets[id + 1]).
    std::string token_arena;
    std::vector<std::uint32_t> token_offsets;  // vocab_size + 1 entries
    std::vector<TokenKind> token_kinds;        // vocab_size entries
    // What token_bytes() shows for a non-byte-level vocabulary (same layout).
    std::string display_arena;
    std::vector<std::uint32_t> display_offsets;
    // token_id() indexes, sorted by token_arena's text: a few hundred KB where a hash map of
    // spellings took ~4 MB for GPT-2's vocabulary.
    std::vector<TokenId> regular_ids_by_bytes;
    std::vector<TokenId> added_ids_by_content;  // added tokens, which take precedence

    AddedTokenMatcher added_tokens;             // matched in the raw text
    AddedTokenMatcher normalized_added_tokens;  // matched in the normalized text
    Normalizer normalizer;
    PreTokenizer pre_tokenizer;
    FastPreTokenizer fast_pre_tokenizer = FastPreTokenizer::kNone;
    int fast_digit_limit = 3;
    BpeModel bpe;
    // The post-processor's tokens around a single sequence (add_special_tokens).
    std::vector<TokenId> prefix_tokens;
    std::vector<TokenId> suffix_tokens;
    DecoderChain decoder;
    std::optional<TokenId> bos;
    std::optional<TokenId> eos;

    std::string_view token_bytes(TokenId id) const {
        return std::string_view(token_arena)
            .substr(token_offsets[id], token_offsets[id + 1] - token_offsets[id]);
    }
};

// Tokenizer::token_id() on a state.
std::optional<TokenId> find_token_id(const TokenizerState& state, std::string_view token_text);

}  // namespace llmserve::tokenizer
