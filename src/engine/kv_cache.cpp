#include "engine/kv_cache.h"

#include <algorithm>

#include "common/error.h"

namespace llmserve::engine {
namespace {

// `num_blocks` once checked, so that no container is sized from a negative count.
std::size_t checked_block_count(int num_blocks, int block_tokens) {
    if (num_blocks <= 0 || block_tokens <= 0)
        fail(ErrorCode::kInvalidArgument,
             "KV cache needs at least one block of at least one token (got {} x {})", num_blocks,
             block_tokens);
    return static_cast<std::size_t>(num_blocks);
}

}  // namespace

KvBlockManager::KvBlockManager(int num_blocks, int block_tokens)
    : block_tokens_(block_tokens), refcount_(checked_block_count(num_blocks, block_tokens), 0) {
    free_.reserve(num_blocks);
    for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);  // hand out low indices first
}

std::optional<int> KvBlockManager::allocate() {
    int block;
    if (!free_.empty()) {
        block = free_.back();
        free_.pop_back();
    } else if (!evictable_.empty()) {
        block = evictable_.front();
        evictable_.pop_front();
        evictable_position_.erase(block);
        forget(block);
    } else {
        return std::nullopt;
    }
    refcount_[block] = 1;
    return block;
}

void KvBlockManager::retain(int block) {
    int& count = refcount_.at(block);
    if (count == 0) {  // a cached block coming back into use
        auto it = evictable_position_.find(block);
        if (it == evictable_position_.end())
            fail(ErrorCode::kInternal, "KV block {} retained while free", block);
        evictable_.erase(it->second);
        evictable_position_.erase(it);
    }
    ++count;
}

void KvBlockManager::release(int block) {
    int& count = refcount_.at(block);
    if (count <= 0)
        fail(ErrorCode::kInternal, "KV block {} released more often than retained", block);
    if (--count > 0) return;
    if (block_hash_.contains(block)) {
        evictable_position_[block] = evictable_.insert(evictable_.end(), block);
    } else {
        free_.push_back(block);
    }
}

std::uint64_t KvBlockManager::chain_hash(std::uint64_t parent,
                                         std::span<const std::int32_t> tokens) {
    // splitmix64-style mixing of each token into the running state.
    std::uint64_t h = parent ^ 0x9e3779b97f4a7c15ull;
    for (std::int32_t token : tokens) {
        h ^= static_cast<std::uint32_t>(token);
        h += 0x9e3779b97f4a7c15ull;
        h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
        h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
        h ^= h >> 31;
    }
    return h;
}

std::optional<int> KvBlockManager::lookup(std::uint64_t parent,
                                          std::span<const std::int32_t> tokens) {
    auto it = entries_.find(chain_hash(parent, tokens));
    if (it == entries_.end()) return std::nullopt;
    const Entry& entry = it->second;
    if (entry.parent != parent ||
        !std::equal(tokens.begin(), tokens.end(), entry.tokens.begin(), entry.tokens.end()))
        return std::nullopt;
    retain(entry.block);
    return entry.block;
}

void KvBlockManager::publish(int block, std::uint64_t parent,
                             std::span<const std::int32_t> tokens) {
    const std::uint64_t hash = chain_hash(parent, tokens);
    if (entries_.contains(hash) || block_hash_.contains(block)) return;
    entries_.emplace(hash, Entry{block, parent, {tokens.begin(), tokens.end()}});
    block_hash_.emplace(block, hash);
}

void KvBlockManager::forget(int block) {
    auto it = block_hash_.find(block);
    if (it == block_hash_.end()) return;
    entries_.erase(it->second);
    block_hash_.erase(it);
}

}  // namespace llmserve::engine
