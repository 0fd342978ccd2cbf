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

// A set of code-point pairs (open addressing, one allocation): which adjacent characters occur
// together inside some token.
class CharPairSet {
  public:
    void insert(char32_t left, char32_t right);
    bool contains(char32_t left, char32_t right) const;
    bool empty() const { return size_ == 0; }

  private:
    static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};
    std::size_t slot_of(std::uint64_t key) const;
    std::vector<std::uint64_t> slots_;
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

// How a piece becomes its first symbols before merging.
struct InitialSymbols {
    // Byte-level vocabularies (GPT-2, Llama 3, Qwen) have a token for every byte and pieces are
    // raw bytes; the others (SentencePiece-style) start from each character's token.
    bool byte_level = true;
    // Byte-level: the token of each byte. Otherwise: the token of each ASCII character (-1: none).
    std::array<TokenId, 256> byte_ids{};
    // Otherwise: the tokens of single non-ASCII characters.
    std::unordered_map<std::string, TokenId, TransparentStringHash, std::equal_to<>> char_ids;
    // byte_fallback: a character without a token becomes the <0xNN> tokens of its bytes (-1:
    // none, in which case the unknown token is used).
    bool byte_fallback = false;
    std::array<TokenId, 256> fallback_ids{};
    TokenId unk = -1;  // -1: a character with no token is dropped, as HF's BPE does
    bool fuse_unk = false;
    // Not byte-level, when no merge involves a byte-fallback or unknown token: the character
    // pairs found inside tokens. No merge can join two characters that no token holds side by
    // side, so a piece splits there into parts merged independently with the same result
    // (SentencePiece-style pre-tokenizers leave whole texts as one piece; this makes its words
    // cacheable).
    CharPairSet joinable_pairs;
};

class BpeModel {
  public:
    // whole_pieces: for ignore_merges, the pieces that are tokens as they are (empty otherwise).
    BpeModel(InitialSymbols symbols, MergeTable merges,
             std::unordered_map<std::string, TokenId, TransparentStringHash, std::equal_to<>>
                 whole_pieces = {})
        : symbols_(std::move(symbols)),
          merges_(std::move(merges)),
          whole_pieces_(std::move(whole_pieces)) {}

    // Appends the tokens of one pre-tokenized piece (non-empty; raw bytes for a byte-level
    // vocabulary, else valid UTF-8 in the vocabulary's spelling) to `out`. Thread-safe.
    void encode_piece(std::string_view piece, std::vector<TokenId>& out) const;

  private:
    // Starts from the piece's initial symbols and repeatedly applies the lowest-ranked mergeable
    // adjacent pair (the leftmost on ties), as HF tokenizers' BPE does; O(n log n) in the piece
    // length.
    void merge_piece(std::string_view piece, std::vector<TokenId>& out) const;
    // merge_piece through the cache.
    void merge_cached(std::string_view piece, std::vector<TokenId>& out) const;
    void append_initial_symbols(std::string_view piece, std::vector<TokenId>& ids) const;

    InitialSymbols symbols_;
    MergeTable merges_;
    std::unordered_map<std::string, TokenId, TransparentStringHash, std::equal_to<>> whole_pieces_;
    mutable PieceCache cache_;
};

}  // namespace llmserve::tokenizer
