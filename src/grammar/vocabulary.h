// A tokenizer's vocabulary as the token mask needs it: every token's bytes in one trie laid out in
// depth-first order, so that one walk decides every token and a dead prefix skips its whole
// subtree. Built once per tokenizer; the grammar library sees tokens only as byte strings.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::grammar {

using TokenId = std::int32_t;

struct TrieNode {
    std::uint32_t subtree_end = 0;   // index of the first node after this node's subtree
    std::uint32_t tokens_begin = 0;  // tokens whose bytes end here: node_tokens[begin, end)
    std::uint32_t tokens_end = 0;
    std::uint16_t depth = 1;  // bytes from the root (the root itself is not stored)
    std::uint8_t byte = 0;
};

class Vocabulary {
  public:
    // token_bytes[id]: the bytes token `id` stands for. Tokens marked `special` and empty tokens
    // are never allowed inside a constrained span; `eos_ids` are allowed exactly where the grammar
    // may end (never as text, even when they are ordinary tokens).
    Vocabulary(const std::vector<std::string>& token_bytes, const std::vector<bool>& special,
               std::vector<TokenId> eos_ids);

    std::size_t size() const { return size_; }
    std::size_t mask_words() const { return (size_ + 31) / 32; }
    const std::vector<TrieNode>& nodes() const { return nodes_; }
    const std::vector<TokenId>& node_tokens() const { return node_tokens_; }
    const std::vector<TokenId>& eos_ids() const { return eos_ids_; }
    std::size_t max_depth() const { return max_depth_; }
    // Distinguishes vocabularies in the automaton's mask cache.
    std::uint64_t id() const { return id_; }

  private:
    std::size_t size_ = 0;
    std::vector<TrieNode> nodes_;
    std::vector<TokenId> node_tokens_;
    std::vector<TokenId> eos_ids_;
    std::size_t max_depth_ = 0;
    std::uint64_t id_ = 0;
};

// Bit `id` of a mask (32 tokens per word).
inline bool mask_allows(std::span<const std::uint32_t> mask, TokenId id) {
    return (mask[static_cast<std::size_t>(id) >> 5] >> (id & 31)) & 1u;
}

}  // namespace llmserve::grammar
