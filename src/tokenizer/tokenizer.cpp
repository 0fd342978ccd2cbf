#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "common/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_state.h"
#include "tokenizer/utf8.h"

namespace llmserve::tokenizer {
namespace {

// `text` itself when it is valid UTF-8, else its U+FFFD-repaired copy written to `storage`.
std::string_view as_valid_utf8(std::string_view text, std::string& storage) {
    if (is_valid_utf8(text)) return text;
    append_utf8_lossy(text, storage);
    return storage;
}

}  // namespace

void Tokenizer::encode_plain(std::string_view valid_utf8, std::vector<TokenId>& out) const {
    PieceScanner scanner(valid_utf8);
    for (std::string_view piece = scanner.next(); !piece.empty(); piece = scanner.next()) {
        state_->bpe.encode_piece(piece, out);
    }
}

std::vector<TokenId> Tokenizer::encode(std::string_view utf8) const {
    std::string repaired;
    utf8 = as_valid_utf8(utf8, repaired);
    std::vector<TokenId> ids;
    ids.reserve(utf8.size() / 4 + 1);

    // Leftmost match first, the longest among those starting there; next_match caches where each
    // added token next occurs so that the text is searched once per token and match.
    const std::vector<AddedToken>& added = state_->added_tokens;
    std::vector<std::size_t> next_match(added.size());
    for (std::size_t i = 0; i < added.size(); ++i) next_match[i] = utf8.find(added[i].content);
    std::size_t pos = 0;
    while (true) {
        std::size_t best_start = std::string_view::npos;
        const AddedToken* best = nullptr;
        for (std::size_t i = 0; i < added.size(); ++i) {
            if (next_match[i] != std::string_view::npos && next_match[i] < pos) {
                next_match[i] = utf8.find(added[i].content, pos);
            }
            if (next_match[i] < best_start || (next_match[i] == best_start && best != nullptr &&
                                               added[i].content.size() > best->content.size())) {
                best_start = next_match[i];
                best = &added[i];
            }
        }
        if (best == nullptr) {
            encode_plain(utf8.substr(pos), ids);
            return ids;
        }
        encode_plain(utf8.substr(pos, best_start - pos), ids);
        ids.push_back(best->id);
        pos = best_start + best->content.size();
    }
}

std::vector<TokenId> Tokenizer::encode_ordinary(std::string_view utf8) const {
    std::string repaired;
    utf8 = as_valid_utf8(utf8, repaired);
    std::vector<TokenId> ids;
    ids.reserve(utf8.size() / 4 + 1);
    encode_plain(utf8, ids);
    return ids;
}

std::string Tokenizer::decode(std::span<const TokenId> ids) const {
    std::string bytes;
    for (const TokenId id : ids) bytes.append(token_bytes(id));
    if (is_valid_utf8(bytes)) return bytes;
    std::string text;
    text.reserve(bytes.size() + 8);
    append_utf8_lossy(bytes, text);
    return text;
}

std::string_view Tokenizer::token_bytes(TokenId id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= state_->token_kinds.size() ||
        state_->token_kinds[id] == TokenKind::kMissing) {
        fail(ErrorCode::kInvalidArgument, "token id {} is not in the vocabulary (ids 0..{})", id,
             static_cast<std::int64_t>(state_->token_kinds.size()) - 1);
    }
    const std::uint32_t begin = state_->token_offsets[id];
    return std::string_view(state_->token_arena)
        .substr(begin, state_->token_offsets[id + 1] - begin);
}

std::size_t Tokenizer::vocab_size() const {
    return state_->token_kinds.size();
}

std::optional<TokenId> Tokenizer::token_id(std::string_view token_text) const {
    const TokenizerState& state = *state_;
    auto find = [&state](const std::vector<TokenId>& ids,
                         std::string_view bytes) -> std::optional<TokenId> {
        const auto it = std::lower_bound(
            ids.begin(), ids.end(), bytes,
            [&state](TokenId id, std::string_view key) { return state.token_bytes(id) < key; });
        if (it == ids.end() || state.token_bytes(*it) != bytes) return std::nullopt;
        return *it;
    };
    // An added token is spelled as its literal content; a regular one in the byte-level alphabet.
    if (auto id = find(state.added_ids_by_content, token_text)) return id;
    const std::optional<std::string> bytes = vocab_text_to_bytes(token_text);
    if (!bytes) return std::nullopt;
    return find(state.regular_ids_by_bytes, *bytes);
}

bool Tokenizer::is_special(TokenId id) const {
    return id >= 0 && static_cast<std::size_t>(id) < state_->token_kinds.size() &&
           state_->token_kinds[id] == TokenKind::kSpecial;
}

std::string StreamingDetokenizer::push(TokenId id) {
    pending_.append(tokenizer_.token_bytes(id));
    // Everything before an incomplete trailing character decodes the same whatever follows.
    const std::size_t final_length = pending_.size() - truncated_tail_length(pending_);
    std::string text;
    append_utf8_lossy(std::string_view(pending_).substr(0, final_length), text);
    pending_.erase(0, final_length);
    return text;
}

std::string StreamingDetokenizer::finish() {
    std::string text;
    append_utf8_lossy(pending_, text);
    pending_.clear();
    return text;
}

}  // namespace llmserve::tokenizer
