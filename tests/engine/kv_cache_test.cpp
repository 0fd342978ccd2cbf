// KvBlockManager: block ownership (allocate / retain / release), the prefix cache (publish /
// lookup, verified against hash collisions) and least-recently-used eviction, plus a randomized
// run checked against a reference model of who holds which block.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "engine/kv_cache.h"

namespace llmserve::engine {
namespace {

using Tokens = std::vector<std::int32_t>;

ErrorCode code_of(const auto& action) {
    try {
        action();
    } catch (const Error& error) {
        return error.code();
    }
    ADD_FAILURE() << "expected an Error";
    return ErrorCode::kInternal;
}

TEST(KvBlockManager, RejectsEmptyPools) {
    EXPECT_EQ(code_of([] { KvBlockManager(0, 16); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ(code_of([] { KvBlockManager(4, 0); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ(code_of([] { KvBlockManager(-1, 16); }), ErrorCode::kInvalidArgument);
}

TEST(KvBlockManager, AllocatesEveryBlockOnceThenNothing) {
    KvBlockManager manager(5, 4);
    EXPECT_EQ(manager.total_blocks(), 5);
    EXPECT_EQ(manager.block_tokens(), 4);
    std::set<int> handed_out;
    for (int i = 0; i < 5; ++i) {
        auto block = manager.allocate();
        ASSERT_TRUE(block.has_value());
        EXPECT_GE(*block, 0);
        EXPECT_LT(*block, 5);
        EXPECT_TRUE(handed_out.insert(*block).second) << "block " << *block << " handed out twice";
        EXPECT_EQ(manager.refcount(*block), 1);
        EXPECT_EQ(manager.available_blocks(), 5 - i - 1);
        EXPECT_EQ(manager.blocks_in_use(), i + 1);
    }
    EXPECT_FALSE(manager.allocate().has_value());
    for (int block : handed_out) manager.release(block);
    EXPECT_EQ(manager.available_blocks(), 5);
    EXPECT_EQ(manager.blocks_in_use(), 0);
}

TEST(KvBlockManager, SharedBlockIsFreedByItsLastHolder) {
    KvBlockManager manager(2, 4);
    const int block = *manager.allocate();
    manager.retain(block);
    manager.retain(block);
    EXPECT_EQ(manager.refcount(block), 3);
    manager.release(block);
    manager.release(block);
    EXPECT_EQ(manager.refcount(block), 1);
    EXPECT_EQ(manager.available_blocks(), 1);
    manager.release(block);
    EXPECT_EQ(manager.refcount(block), 0);
    EXPECT_EQ(manager.available_blocks(), 2);
}

TEST(KvBlockManager, MisuseIsAnInternalErrorThatLeavesThePoolWhole) {
    KvBlockManager manager(3, 4);
    const int block = *manager.allocate();
    manager.release(block);
    EXPECT_EQ(code_of([&] { manager.release(block); }), ErrorCode::kInternal);
    EXPECT_EQ(code_of([&] { manager.retain(block); }), ErrorCode::kInternal);
    // The failed calls changed nothing: the block is still free and handed out exactly once.
    EXPECT_EQ(manager.refcount(block), 0);
    EXPECT_EQ(manager.available_blocks(), 3);
    std::set<int> handed_out;
    for (int i = 0; i < 3; ++i) handed_out.insert(*manager.allocate());
    EXPECT_EQ(handed_out.size(), 3u);
    EXPECT_FALSE(manager.allocate().has_value());
}

TEST(KvBlockManager, LookupFindsPublishedBlockAndRetainsIt) {
    KvBlockManager manager(4, 3);
    const Tokens first = {5, 6, 7};
    const Tokens second = {8, 9, 10};
    const int a = *manager.allocate();
    const int b = *manager.allocate();
    manager.publish(a, 0, first);
    const std::uint64_t after_first = KvBlockManager::chain_hash(0, first);
    manager.publish(b, after_first, second);
    EXPECT_EQ(manager.cached_blocks(), 2u);

    EXPECT_EQ(manager.lookup(0, first), a);
    EXPECT_EQ(manager.refcount(a), 2);
    EXPECT_EQ(manager.lookup(after_first, second), b);
    EXPECT_EQ(manager.refcount(b), 2);
    // The same tokens after another prefix, or other tokens after the same prefix: no hit.
    EXPECT_FALSE(manager.lookup(0, second).has_value());
    EXPECT_FALSE(manager.lookup(after_first, first).has_value());
    EXPECT_FALSE(manager.lookup(0, Tokens{5, 6, 8}).has_value());
}

TEST(KvBlockManager, PublishingAgainIsANoOp) {
    KvBlockManager manager(3, 2);
    const Tokens tokens = {1, 2};
    const int a = *manager.allocate();
    const int b = *manager.allocate();
    manager.publish(a, 0, tokens);
    manager.publish(b, 0, tokens);        // equal entry exists: a stays the cached block
    manager.publish(a, 0, Tokens{3, 4});  // a already holds a prefix: unchanged
    EXPECT_EQ(manager.cached_blocks(), 1u);
    EXPECT_EQ(manager.lookup(0, tokens), a);
    EXPECT_FALSE(manager.lookup(0, Tokens{3, 4}).has_value());
    manager.release(a);
    manager.release(a);
    manager.release(b);
    EXPECT_EQ(manager.available_blocks(), 3);
}

TEST(KvBlockManager, ReleasedCachedBlockStaysFindableUntilEvicted) {
    KvBlockManager manager(2, 2);
    const Tokens tokens = {11, 12};
    const int cached = *manager.allocate();
    manager.publish(cached, 0, tokens);
    manager.release(cached);
    EXPECT_EQ(manager.refcount(cached), 0);
    EXPECT_EQ(manager.available_blocks(), 2);  // evictable blocks count as available
    EXPECT_EQ(manager.lookup(0, tokens), cached);
    EXPECT_EQ(manager.available_blocks(), 1);
    manager.release(cached);

    // Free blocks go before cached ones; the cached one goes when nothing else is left.
    const int other = *manager.allocate();
    EXPECT_NE(other, cached);
    EXPECT_EQ(manager.lookup(0, tokens), cached);
    manager.release(cached);
    EXPECT_EQ(manager.allocate(), cached);
    EXPECT_EQ(manager.cached_blocks(), 0u);
    EXPECT_FALSE(manager.lookup(0, tokens).has_value());
    manager.release(cached);  // no longer published: back to plain free
    manager.release(other);
    EXPECT_EQ(manager.available_blocks(), 2);
}

TEST(KvBlockManager, EvictsLeastRecentlyReleasedFirstAndLookupRefreshes) {
    KvBlockManager manager(4, 1);
    std::vector<int> blocks;
    for (int i = 0; i < 4; ++i) {
        blocks.push_back(*manager.allocate());
        manager.publish(blocks[i], 0, Tokens{100 + i});
    }
    // Release order 2, 0, 3, 1; then touch 2 again (lookup + release) so it becomes the newest.
    for (int i : {2, 0, 3, 1}) manager.release(blocks[i]);
    ASSERT_EQ(manager.lookup(0, Tokens{102}), blocks[2]);
    manager.release(blocks[2]);

    std::vector<int> evicted;
    for (int i = 0; i < 4; ++i) evicted.push_back(*manager.allocate());
    EXPECT_EQ(evicted, (std::vector<int>{blocks[0], blocks[3], blocks[1], blocks[2]}));
    EXPECT_EQ(manager.cached_blocks(), 0u);
    for (int i = 0; i < 4; ++i) EXPECT_FALSE(manager.lookup(0, Tokens{100 + i}).has_value());
}

TEST(KvBlockManager, CollidingParentAndTokensAreNotConfused) {
    // The chain hash folds the parent and the first token together by xor, so (parent 1, [0, 7])
    // and (parent 0, [1, 7]) hash alike; lookup must still tell them apart.
    const Tokens stored = {1, 7};
    const Tokens probe = {0, 7};
    ASSERT_EQ(KvBlockManager::chain_hash(0, stored), KvBlockManager::chain_hash(1, probe))
        << "the hash changed; pick another colliding pair";
    KvBlockManager manager(2, 2);
    const int block = *manager.allocate();
    manager.publish(block, 0, stored);
    EXPECT_FALSE(manager.lookup(1, probe).has_value());
    EXPECT_EQ(manager.refcount(block), 1);
    EXPECT_EQ(manager.lookup(0, stored), block);
}

TEST(KvBlockManager, CollidingTokensAfterTheSameParentAreNotConfused) {
    // Chaining one token at a time is public (chain_hash of a one-token span), so a birthday search
    // finds two first tokens whose states agree in the high 32 bits; a second token then cancels
    // the low 32 bits, giving two different blocks with one hash and the same parent.
    std::unordered_map<std::uint32_t, std::int32_t> by_high_bits;
    Tokens stored, probe;
    for (std::int32_t first = 0; first < (1 << 22) && stored.empty(); ++first) {
        const std::uint64_t state = KvBlockManager::chain_hash(0, Tokens{first});
        auto [it, inserted] = by_high_bits.emplace(static_cast<std::uint32_t>(state >> 32), first);
        if (inserted) continue;
        const std::uint64_t other = KvBlockManager::chain_hash(0, Tokens{it->second});
        stored = {it->second, 0};
        probe = {first, static_cast<std::int32_t>(static_cast<std::uint32_t>(state ^ other))};
    }
    ASSERT_FALSE(stored.empty()) << "no collision found";
    if (KvBlockManager::chain_hash(0, stored) != KvBlockManager::chain_hash(0, probe))
        GTEST_SKIP() << "the hash no longer chains token by token; no colliding pair constructed";

    KvBlockManager manager(2, 2);
    const int block = *manager.allocate();
    manager.publish(block, 0, stored);
    EXPECT_FALSE(manager.lookup(0, probe).has_value());
    EXPECT_EQ(manager.lookup(0, stored), block);
}

// Random allocate / retain / release / publish / lookup against a reference count of every
// holder: no block is ever handed to two owners, counts match, and the pool is whole at the end.
TEST(KvBlockManager, RandomizedOwnershipNeverLosesABlock) {
    constexpr int kBlocks = 24;
    constexpr int kBlockTokens = 2;
    KvBlockManager manager(kBlocks, kBlockTokens);
    std::mt19937 rng(20240601);
    std::vector<int> held;             // one entry per reference we hold
    std::map<int, int> expected_refs;  // block -> references we hold
    std::map<int, Tokens> published;   // block -> tokens it was published with (parent 0)
    const auto random_tokens = [&] {
        return Tokens{static_cast<std::int32_t>(rng() % 6), static_cast<std::int32_t>(rng() % 6)};
    };
    for (int iteration = 0; iteration < 20000; ++iteration) {
        const unsigned op = rng() % 5;
        if (op == 0) {
            const bool pool_exhausted = static_cast<int>(expected_refs.size()) == kBlocks;
            auto block = manager.allocate();
            ASSERT_EQ(block.has_value(), !pool_exhausted);
            if (!block) continue;
            ASSERT_FALSE(expected_refs.contains(*block)) << "block " << *block << " still held";
            published.erase(*block);  // an evicted cache entry is gone
            expected_refs[*block] = 1;
            held.push_back(*block);
        } else if (op == 1 && !held.empty()) {
            const int block = held[rng() % held.size()];
            manager.retain(block);
            ++expected_refs[block];
            held.push_back(block);
        } else if (op == 2 && !held.empty()) {
            const std::size_t at = rng() % held.size();
            const int block = held[at];
            held.erase(held.begin() + static_cast<std::ptrdiff_t>(at));
            manager.release(block);
            if (--expected_refs[block] == 0) expected_refs.erase(block);
        } else if (op == 3 && !held.empty()) {
            const int block = held[rng() % held.size()];
            const Tokens tokens = random_tokens();
            manager.publish(block, 0, tokens);
            const bool taken =
                std::any_of(published.begin(), published.end(),
                            [&](const auto& entry) { return entry.second == tokens; });
            if (!published.contains(block) && !taken) published[block] = tokens;
        } else if (op == 4) {
            const Tokens tokens = random_tokens();
            auto hit = manager.lookup(0, tokens);
            auto owner = std::find_if(published.begin(), published.end(),
                                      [&](const auto& entry) { return entry.second == tokens; });
            ASSERT_EQ(hit.has_value(), owner != published.end());
            if (!hit) continue;
            ASSERT_EQ(*hit, owner->first);
            ++expected_refs[*hit];
            held.push_back(*hit);
        }
        ASSERT_EQ(manager.blocks_in_use(), static_cast<int>(expected_refs.size()));
        ASSERT_EQ(manager.cached_blocks(), published.size());
        for (const auto& [block, refs] : expected_refs) ASSERT_EQ(manager.refcount(block), refs);
    }
    for (int block : held) manager.release(block);
    EXPECT_EQ(manager.available_blocks(), kBlocks);
    EXPECT_EQ(manager.blocks_in_use(), 0);
    for (int block = 0; block < kBlocks; ++block) EXPECT_EQ(manager.refcount(block), 0);
}

}  // namespace
}  // namespace llmserve::engine
