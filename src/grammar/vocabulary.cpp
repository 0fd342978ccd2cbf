#include "grammar/vocabulary.h"

#include <algorithm>
#include <numeric>

#include "common/error.h"

namespace llmserve::grammar {

Vocabulary::Vocabulary(const std::vector<std::string>& token_bytes,
                       const std::vector<bool>& special, std::vector<TokenId> eos_ids)
    : size_(token_bytes.size()), eos_ids_(std::move(eos_ids)) {
    static std::atomic<std::uint64_t> next_id{1};
    id_ = next_id++;
    if (special.size() != token_bytes.size())
        fail(ErrorCode::kInternal, "vocabulary: {} special flags for {} tokens", special.size(),
             token_bytes.size());
    for (const TokenId eos : eos_ids_)
        if (eos < 0 || static_cast<std::size_t>(eos) >= size_)
            fail(ErrorCode::kInternal, "vocabulary: EOS id {} outside the {} tokens", eos, size_);
    std::vector<TokenId> order;
    std::vector<bool> excluded = special;  // EOS is allowed only as the end, never as text
    for (const TokenId eos : eos_ids_) excluded[eos] = true;
    for (std::size_t id = 0; id < size_; ++id)
        if (!excluded[id] && !token_bytes[id].empty()) order.push_back(static_cast<TokenId>(id));
    std::sort(order.begin(), order.end(), [&](TokenId a, TokenId b) {
        return token_bytes[a] < token_bytes[b] || (token_bytes[a] == token_bytes[b] && a < b);
    });
    // Depth-first layout: a token's path shares the nodes of its common prefix with the previous
    // token in byte order; open[d] is the node at depth d+1 on the current path.
    std::vector<std::uint32_t> open;
    std::string_view previous;
    for (const TokenId id : order) {
        const std::string_view bytes = token_bytes[id];
        if (bytes.size() > 0xFFFF)
            fail(ErrorCode::kUnsupported, "vocabulary: token {} is {} bytes long", id,
                 bytes.size());
        std::size_t common = 0;
        while (common < previous.size() && common < bytes.size() &&
               previous[common] == bytes[common])
            ++common;
        for (std::size_t d = common; d < open.size(); ++d)
            nodes_[open[d]].subtree_end = static_cast<std::uint32_t>(nodes_.size());
        open.resize(common);
        for (std::size_t d = common; d < bytes.size(); ++d) {
            TrieNode node;
            node.depth = static_cast<std::uint16_t>(d + 1);
            node.byte = static_cast<std::uint8_t>(bytes[d]);
            open.push_back(static_cast<std::uint32_t>(nodes_.size()));
            nodes_.push_back(node);
        }
        TrieNode& last = nodes_[open.back()];
        if (last.tokens_begin == last.tokens_end)
            last.tokens_begin = last.tokens_end = static_cast<std::uint32_t>(node_tokens_.size());
        node_tokens_.push_back(id);
        ++last.tokens_end;
        max_depth_ = std::max(max_depth_, bytes.size());
        previous = bytes;
    }
    for (const std::uint32_t index : open)
        nodes_[index].subtree_end = static_cast<std::uint32_t>(nodes_.size());
}

}  // namespace llmserve::grammar
