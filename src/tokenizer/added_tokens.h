// Finds added tokens (tokenizer.json's added_tokens) in text as Hugging Face tokenizers does:
// leftmost match first, the longest among those starting there, honouring single_word, lstrip
// and rstrip.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace llmserve::tokenizer {

struct AddedTokenPattern {
    std::string content;
    TokenId id;
    bool single_word = false;
    bool lstrip = false;
    bool rstrip = false;
};

class AddedTokenMatcher {
  public:
    AddedTokenMatcher() = default;
    explicit AddedTokenMatcher(std::vector<AddedTokenPattern> tokens);

    bool empty() const { return tokens_.empty(); }

    // Calls on_text for each stretch of `valid_utf8` between matches (possibly empty, with its
    // byte offset) and on_token for each match, in order. Whitespace that an lstrip / rstrip
    // token absorbs belongs to no stretch.
    void split(std::string_view valid_utf8,
               const std::function<void(std::string_view text, std::size_t offset)>& on_text,
               const std::function<void(TokenId)>& on_token) const;

  private:
    struct Node {
        std::vector<std::pair<unsigned char, std::int32_t>> children;  // sorted by byte
        std::int32_t token = -1;  // index into tokens_ of the token ending here
    };
    // The longest token starting at `pos` (index into tokens_, its length), or {-1, 0}.
    std::pair<std::int32_t, std::size_t> longest_at(std::string_view text, std::size_t pos) const;

    std::vector<AddedTokenPattern> tokens_;
    std::vector<Node> trie_;
    std::array<bool, 256> starts_token_{};
    int first_byte_count_ = 0;           // distinct first bytes of the tokens
    unsigned char only_first_byte_ = 0;  // the first byte when there is one (found by memchr)
};

}  // namespace llmserve::tokenizer
