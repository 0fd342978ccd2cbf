// Rank-based byte-pair merging of one pre-tokenized piece, with a bounded, thread-safe cache of
// the results (natural text repeats a small set of words, so most pieces skip merging entirely).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/string_hash.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::tokenizer {

struct MergeResult {
    std::int32_t rank;  // position in the merges list: lower merges first
    TokenId merged;     // the token the pair becomes
};

// (left, right) token pair -> merge, keyed by left << 32 | right.
using MergeMap = std::unordered_map<std::uint64_t, MergeResult>;

constexpr std::uint64_t merge_key(TokenId left, TokenId right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
           static_cast<std::uint32_t>(right);
}

// Maps pieces to their token ids. Safe for concurrent use: 16 mutex-guarded shards, each holding
// at most kShardCapacity pieces of at most kMaxPieceBytes; a full shard is emptied and refilled.
class PieceCache {
  public:
    static constexpr std::size_t kShardCount = 16;
    static constexpr std::size_t kShardCapacity = 4096;
    static constexpr std::size_t kMaxPieceBytes = 64;

    // Appends the cached ids of `piece` to `out`; false (out untouched) when not cached.
    bool lookup(std::string_view piece, std::vector<TokenId>& out) const;
    void store(std::string_view piece, std::span<const TokenId> ids);

  private:
    struct Shard {
        mutable std::mutex mutex;
        std::unordered_map<std::string, std::vector<TokenId>, TransparentStringHash,
                           std::equal_to<>>
            entries;
    };

    Shard& shard_for(std::string_view piece);
    const Shard& shard_for(std::string_view piece) const;

    std::array<Shard, kShardCount> shards_;
};

class BpeModel {
  public:
    // byte_ids[b]: the token of the single byte b. merges: every mergeable pair.
    BpeModel(std::array<TokenId, 256> byte_ids, MergeMap merges)
        : byte_ids_(byte_ids), merges_(std::move(merges)) {}

    // Appends the tokens of one pre-tokenized piece (raw bytes, non-empty) to `out`. Thread-safe.
    void encode_piece(std::string_view piece, std::vector<TokenId>& out) const;

  private:
    // Starts from one token per byte and repeatedly applies the lowest-ranked mergeable adjacent
    // pair (the leftmost on ties), as HF tokenizers' BPE does; O(n log n) in the piece length.
    void merge_piece(std::string_view piece, std::vector<TokenId>& out) const;

    std::array<TokenId, 256> byte_ids_;
    MergeMap merges_;
    mutable PieceCache cache_;
};

}  // namespace llmserve::tokenizer
