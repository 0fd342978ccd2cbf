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

// (left, right) token pair -> merge: an open-addressing table in one allocation (GPT-2's 50,000
// merges take 2 MiB in one block where a node-based map scattered ~2.5 MB over 50,000 small
// allocations, interleaved with the loader's short-lived ones).
class MergeTable {
  public:
    explicit MergeTable(std::size_t expected_merges = 0);
    // Sets the merge of (left, right); a repeated pair keeps the last value. Ids are >= 0.
    void insert_or_assign(TokenId left, TokenId right, MergeResult merge);
    const MergeResult* find(TokenId left, TokenId right) const;
    std::size_t size() const { return size_; }

  private:
    static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};  // no pair of ids >= 0 has it
    struct Slot {
        std::uint64_t key = kEmpty;  // left << 32 | right
        MergeResult merge{};
    };
    static std::uint64_t key_of(TokenId left, TokenId right);
    std::size_t slot_of(std::uint64_t key) const;  // the key's slot, or the empty one it would take
    void grow();

    std::vector<Slot> slots_;  // size a power of two, at most 2/3 full
    std::size_t size_ = 0;
};

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
    BpeModel(std::array<TokenId, 256> byte_ids, MergeTable merges)
        : byte_ids_(byte_ids), merges_(std::move(merges)) {}

    // Appends the tokens of one pre-tokenized piece (raw bytes, non-empty) to `out`. Thread-safe.
    void encode_piece(std::string_view piece, std::vector<TokenId>& out) const;

  private:
    // Starts from one token per byte and repeatedly applies the lowest-ranked mergeable adjacent
    // pair (the leftmost on ties), as HF tokenizers' BPE does; O(n log n) in the piece length.
    void merge_piece(std::string_view piece, std::vector<TokenId>& out) const;

    std::array<TokenId, 256> byte_ids_;
    MergeTable merges_;
    mutable PieceCache cache_;
};

}  // namespace llmserve::tokenizer
