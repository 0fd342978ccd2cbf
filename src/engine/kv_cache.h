// Bookkeeping of the paged KV cache: which blocks are free, who holds each block, and which full
// prompt blocks can be reused by a later request with the same prefix. The block contents live in a
// backend::KvStorage; this class only hands out block indices, so it is the same for every device.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace llmserve::engine {

class KvBlockManager {
  public:
    KvBlockManager(int num_blocks, int block_tokens);

    int block_tokens() const { return block_tokens_; }
    int total_blocks() const { return static_cast<int>(refcount_.size()); }
    // Blocks obtainable now: free ones plus cached ones nobody holds (evicted on demand, least
    // recently used first).
    int available_blocks() const { return static_cast<int>(free_.size() + evictable_.size()); }
    int blocks_in_use() const { return total_blocks() - available_blocks(); }

    // A block for the caller's exclusive use (refcount 1), or nullopt when none is available.
    std::optional<int> allocate();
    void retain(int block);
    // Drops one reference; at zero the block becomes free, or evictable when it holds a published
    // prefix.
    void release(int block);
    int refcount(int block) const { return refcount_.at(block); }

    // Prefix cache. A full block is identified by the hash of its tokens chained to the hash of the
    // prefix before it; entries also keep the tokens and parent hash so that a hash collision can
    // never return wrong keys/values.
    static std::uint64_t chain_hash(std::uint64_t parent, std::span<const std::int32_t> tokens);
    // The cached block holding exactly `tokens` after the prefix `parent`, retained for the caller;
    // or nullopt.
    std::optional<int> lookup(std::uint64_t parent, std::span<const std::int32_t> tokens);
    // Records that `block` (held by the caller, full) holds `tokens` after prefix `parent`. A no-op
    // when an equal entry exists already.
    void publish(int block, std::uint64_t parent, std::span<const std::int32_t> tokens);
    std::size_t cached_blocks() const { return entries_.size(); }

  private:
    struct Entry {
        int block;
        std::uint64_t parent;
        std::vector<std::int32_t> tokens;
    };
    void forget(int block);  // drops the prefix entry of a block being reused

    int block_tokens_;
    std::vector<int> refcount_;
    std::vector<int> free_;
    std::list<int> evictable_;  // front = least recently used
    std::unordered_map<int, std::list<int>::iterator> evictable_position_;
    std::unordered_map<std::uint64_t, Entry> entries_;  // chain hash -> entry
    std::unordered_map<int, std::uint64_t>
        block_hash_;  // block -> its chain hash, for published blocks
};

}  // namespace llmserve::engine
