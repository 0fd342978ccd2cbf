#include "tokenizer/bpe.h"

#include <algorithm>
#include <cstdint>

#include "tokenizer/utf8.h"

namespace llmserve::tokenizer {
namespace {

constexpr std::int32_t kNone = -1;

struct Symbol {
    TokenId id;  // kNone once merged into its left neighbour
    std::int32_t prev;
    std::int32_t next;
};

// A pair that was mergeable when queued; stale once either side has changed since.
struct Candidate {
    std::int32_t rank;
    std::int32_t left;  // index into the symbols
    TokenId left_id;
    TokenId right_id;
    TokenId merged;
};

// std::push_heap builds a max-heap; this ordering puts the lowest (rank, position) on top.
bool lower_priority(const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
}

}  // namespace

PieceCache::Shard& PieceCache::shard_for(std::string_view piece) {
    return shards_[TransparentStringHash{}(piece) % kShardCount];
}

const PieceCache::Shard& PieceCache::shard_for(std::string_view piece) const {
    return shards_[TransparentStringHash{}(piece) % kShardCount];
}

MergeTable::MergeTable(std::size_t expected_merges) {
    std::size_t capacity = 16;
    while (capacity * 2 < expected_merges * 3) capacity *= 2;
    slots_.resize(capacity);
}

std::size_t MergeTable::slot_of(std::uint64_t key) const {
    const std::size_t mask = slots_.size() - 1;
    // Fibonacci hashing spreads the ids' low bits over the table; linear probing from there.
    std::size_t slot = static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
    while (slots_[slot].key != key && slots_[slot].key != kEmpty) slot = (slot + 1) & mask;
    return slot;
}

std::uint64_t MergeTable::key_of(TokenId left, TokenId right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
           static_cast<std::uint32_t>(right);
}

void MergeTable::grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    for (const Slot& entry : old)
        if (entry.key != kEmpty) slots_[slot_of(entry.key)] = entry;
}

void MergeTable::insert_or_assign(TokenId left, TokenId right, MergeResult merge) {
    const std::uint64_t key = key_of(left, right);
    std::size_t slot = slot_of(key);
    if (slots_[slot].key == kEmpty) {
        if ((size_ + 1) * 3 > slots_.size() * 2) {
            grow();
            slot = slot_of(key);
        }
        ++size_;
    }
    slots_[slot] = {key, merge};
}

const MergeResult* MergeTable::find(TokenId left, TokenId right) const {
    const std::uint64_t key = key_of(left, right);
    const Slot& slot = slots_[slot_of(key)];
    return slot.key == key ? &slot.merge : nullptr;
}

std::size_t CharPairSet::slot_of(std::uint64_t key) const {
    const std::size_t mask = slots_.size() - 1;
    std::size_t slot = static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
    while (slots_[slot] != key && slots_[slot] != kEmpty) slot = (slot + 1) & mask;
    return slot;
}

void CharPairSet::insert(char32_t left, char32_t right) {
    if ((size_ + 1) * 3 > slots_.size() * 2) {
        std::vector<std::uint64_t> old(std::max<std::size_t>(64, slots_.size() * 2), kEmpty);
        old.swap(slots_);
        for (const std::uint64_t key : old)
            if (key != kEmpty) slots_[slot_of(key)] = key;
    }
    const std::uint64_t key = static_cast<std::uint64_t>(left) << 32 | right;
    std::uint64_t& slot = slots_[slot_of(key)];
    if (slot == kEmpty) {
        slot = key;
        ++size_;
    }
}

bool CharPairSet::contains(char32_t left, char32_t right) const {
    if (slots_.empty()) return false;
    const std::uint64_t key = static_cast<std::uint64_t>(left) << 32 | right;
    return slots_[slot_of(key)] == key;
}

bool PieceCache::lookup(std::string_view piece, std::vector<TokenId>& out) const {
    const Shard& shard = shard_for(piece);
    std::lock_guard lock(shard.mutex);
    const auto it = shard.entries.find(piece);
    if (it == shard.entries.end()) return false;
    out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
}

void PieceCache::store(std::string_view piece, std::span<const TokenId> ids) {
    if (piece.size() > kMaxPieceBytes) return;
    Shard& shard = shard_for(piece);
    std::lock_guard lock(shard.mutex);
    if (shard.entries.size() >= kShardCapacity) shard.entries.clear();
    shard.entries.try_emplace(std::string(piece), ids.begin(), ids.end());
}

void BpeModel::encode_piece(std::string_view piece, std::vector<TokenId>& out) const {
    if (piece.size() == 1 && symbols_.byte_level) {
        out.push_back(symbols_.byte_ids[static_cast<std::uint8_t>(piece[0])]);
        return;
    }
    const CharPairSet& joinable = symbols_.joinable_pairs;
    if (joinable.empty()) {
        // The cache holds whole pieces' results, the ignore_merges shortcut included: checked
        // first, it keeps the (large, scattered) vocabulary map out of the common case.
        if (piece.size() <= PieceCache::kMaxPieceBytes && cache_.lookup(piece, out)) return;
        const std::size_t first_new = out.size();
        if (const auto it = whole_pieces_.find(piece); it != whole_pieces_.end()) {
            out.push_back(it->second);
        } else {
            merge_piece(piece, out);
        }
        cache_.store(piece, std::span(out).subspan(first_new));
        return;
    }
    // Split at unjoinable pairs, the cache holds the parts' merges; the ignore_merges shortcut
    // applies to the whole piece only.
    if (const auto it = whole_pieces_.find(piece); it != whole_pieces_.end()) {
        out.push_back(it->second);
        return;
    }
    std::size_t part_start = 0;
    std::size_t pos = next_utf8_sequence(piece, 0).length;
    char32_t previous = decode_code_point(piece, 0, pos);
    while (pos < piece.size()) {
        const std::size_t length = next_utf8_sequence(piece, pos).length;
        const char32_t current = decode_code_point(piece, pos, length);
        if (!joinable.contains(previous, current)) {
            merge_cached(piece.substr(part_start, pos - part_start), out);
            part_start = pos;
        }
        previous = current;
        pos += length;
    }
    merge_cached(piece.substr(part_start), out);
}

void BpeModel::merge_cached(std::string_view piece, std::vector<TokenId>& out) const {
    if (piece.size() <= PieceCache::kMaxPieceBytes && cache_.lookup(piece, out)) return;
    const std::size_t first_new = out.size();
    merge_piece(piece, out);
    cache_.store(piece, std::span(out).subspan(first_new));
}

void BpeModel::append_initial_symbols(std::string_view piece, std::vector<TokenId>& ids) const {
    if (symbols_.byte_level) {
        for (const char byte : piece)
            ids.push_back(symbols_.byte_ids[static_cast<std::uint8_t>(byte)]);
        return;
    }
    // HF's BPE::merge_word: unknown characters become byte tokens, else the (fused) unknown
    // token, which is only appended once a known character or the end follows.
    TokenId pending_unk = -1;
    for (std::size_t pos = 0; pos < piece.size();) {
        const auto lead = static_cast<std::uint8_t>(piece[pos]);
        const std::size_t length = next_utf8_sequence(piece, pos).length;
        TokenId id = -1;
        if (lead < 0x80) {
            id = symbols_.byte_ids[lead];
        } else if (const auto it = symbols_.char_ids.find(piece.substr(pos, length));
                   it != symbols_.char_ids.end()) {
            id = it->second;
        }
        const std::string_view character = piece.substr(pos, length);
        pos += length;
        if (id >= 0) {
            if (pending_unk >= 0) ids.push_back(pending_unk);
            pending_unk = -1;
            ids.push_back(id);
            continue;
        }
        if (symbols_.byte_fallback &&
            std::all_of(character.begin(), character.end(), [this](char byte) {
                return symbols_.fallback_ids[static_cast<std::uint8_t>(byte)] >= 0;
            })) {
            for (const char byte : character)
                ids.push_back(symbols_.fallback_ids[static_cast<std::uint8_t>(byte)]);
            continue;
        }
        if (symbols_.unk < 0) continue;
        if (pending_unk >= 0 && !symbols_.fuse_unk) ids.push_back(pending_unk);
        pending_unk = symbols_.unk;
    }
    if (pending_unk >= 0) ids.push_back(pending_unk);
}

void BpeModel::merge_piece(std::string_view piece, std::vector<TokenId>& out) const {
    std::vector<TokenId> initial;
    initial.reserve(piece.size());
    append_initial_symbols(piece, initial);
    if (initial.empty()) return;
    const auto count = static_cast<std::int32_t>(initial.size());
    std::vector<Symbol> symbols(initial.size());
    for (std::int32_t i = 0; i < count; ++i) {
        symbols[i] = {initial[i], i - 1, i + 1 < count ? i + 1 : kNone};
    }

    std::vector<Candidate> queue;
    const auto enqueue_pair = [&](std::int32_t left) {
        const std::int32_t right = symbols[left].next;
        if (right == kNone) return;
        const MergeResult* merge = merges_.find(symbols[left].id, symbols[right].id);
        if (merge == nullptr) return;
        queue.push_back({merge->rank, left, symbols[left].id, symbols[right].id, merge->merged});
        std::push_heap(queue.begin(), queue.end(), lower_priority);
    };
    for (std::int32_t i = 0; i + 1 < count; ++i) enqueue_pair(i);

    while (!queue.empty()) {
        std::pop_heap(queue.begin(), queue.end(), lower_priority);
        const Candidate candidate = queue.back();
        queue.pop_back();
        Symbol& left = symbols[candidate.left];
        // A symbol's id only changes by merging into a longer token, so matching ids prove the
        // pair is still adjacent and unchanged.
        if (left.id != candidate.left_id || left.next == kNone ||
            symbols[left.next].id != candidate.right_id) {
            continue;
        }
        Symbol& right = symbols[left.next];
        left.id = candidate.merged;
        left.next = right.next;
        if (right.next != kNone) symbols[right.next].prev = candidate.left;
        right.id = kNone;
        if (left.prev != kNone) enqueue_pair(left.prev);
        enqueue_pair(candidate.left);
    }

    for (std::int32_t i = 0; i != kNone; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace llmserve::tokenizer
