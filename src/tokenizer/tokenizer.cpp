#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "common/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/llama3_scanner.h"
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

void check_id(const TokenizerState& state, TokenId id) {
    if (id < 0 || static_cast<std::size_t>(id) >= state.token_kinds.size() ||
        state.token_kinds[id] == TokenKind::kMissing) {
        fail(ErrorCode::kInvalidArgument, "token id {} is not in the vocabulary (ids 0..{})", id,
             static_cast<std::int64_t>(state.token_kinds.size()) - 1);
    }
}

}  // namespace

void Tokenizer::encode_normalized(std::string_view valid_utf8, bool at_origin,
                                  std::vector<TokenId>& out) const {
    const TokenizerState& state = *state_;
    switch (state.fast_pre_tokenizer) {
        case FastPreTokenizer::kGpt2: {
            PieceScanner scanner(valid_utf8);
            for (std::string_view piece = scanner.next(); !piece.empty(); piece = scanner.next())
                state.bpe.encode_piece(piece, out);
            return;
        }
        case FastPreTokenizer::kLlama3: {
            Llama3Scanner scanner(valid_utf8, state.fast_digit_limit);
            for (std::string_view piece = scanner.next(); !piece.empty(); piece = scanner.next())
                state.bpe.encode_piece(piece, out);
            return;
        }
        case FastPreTokenizer::kNone:
            state.pre_tokenizer.run(valid_utf8, at_origin, [&](std::string_view piece) {
                state.bpe.encode_piece(piece, out);
            });
            return;
    }
}

void Tokenizer::encode_stretch(std::string_view valid_utf8, bool at_origin,
                               std::vector<TokenId>& out) const {
    // HF skips empty stretches before normalizing (a Prepend normalizer adds nothing there).
    if (valid_utf8.empty()) return;
    const TokenizerState& state = *state_;
    std::string storage;
    const std::string_view normalized =
        state.normalizer.empty() ? valid_utf8
                                 : std::string_view(storage = state.normalizer.apply(valid_utf8));
    if (state.normalized_added_tokens.empty()) {
        encode_normalized(normalized, at_origin, out);
        return;
    }
    state.normalized_added_tokens.split(
        normalized,
        [&](std::string_view text, std::size_t offset) {
            if (!text.empty()) encode_normalized(text, at_origin && offset == 0, out);
        },
        [&](TokenId id) { out.push_back(id); });
}

std::vector<TokenId> Tokenizer::encode(std::string_view utf8, bool add_special_tokens) const {
    const TokenizerState& state = *state_;
    std::string repaired;
    utf8 = as_valid_utf8(utf8, repaired);
    std::vector<TokenId> ids;
    ids.reserve(utf8.size() / 4 + 1);
    if (add_special_tokens) ids = state.prefix_tokens;
    if (state.added_tokens.empty()) {
        encode_stretch(utf8, true, ids);
    } else {
        state.added_tokens.split(
            utf8,
            [&](std::string_view text, std::size_t offset) {
                encode_stretch(text, offset == 0, ids);
            },
            [&](TokenId id) { ids.push_back(id); });
    }
    if (add_special_tokens)
        ids.insert(ids.end(), state.suffix_tokens.begin(), state.suffix_tokens.end());
    return ids;
}

std::vector<TokenId> Tokenizer::encode_ordinary(std::string_view utf8) const {
    std::string repaired;
    utf8 = as_valid_utf8(utf8, repaired);
    std::vector<TokenId> ids;
    ids.reserve(utf8.size() / 4 + 1);
    const TokenizerState& state = *state_;
    const std::string normalized =
        state.normalizer.empty() ? std::string() : state.normalizer.apply(utf8);
    encode_normalized(state.normalizer.empty() ? utf8 : std::string_view(normalized), true, ids);
    return ids;
}

std::string Tokenizer::decode(std::span<const TokenId> ids) const {
    const TokenizerState& state = *state_;
    if (!state.byte_level) {
        for (const TokenId id : ids) check_id(state, id);
        DecodeStream stream(state.decoder);
        std::string text;
        for (const TokenId id : ids) text += stream.push(state.token_bytes(id));
        return text + stream.finish();
    }
    std::string bytes;
    for (const TokenId id : ids) bytes.append(token_bytes(id));
    if (is_valid_utf8(bytes)) return bytes;
    std::string text;
    text.reserve(bytes.size() + 8);
    append_utf8_lossy(bytes, text);
    return text;
}

std::string_view Tokenizer::token_bytes(TokenId id) const {
    const TokenizerState& state = *state_;
    check_id(state, id);
    if (!state.byte_level) {
        const std::uint32_t begin = state.display_offsets[id];
        return std::string_view(state.display_arena)
            .substr(begin, state.display_offsets[id + 1] - begin);
    }
    return state.token_bytes(id);
}

std::size_t Tokenizer::vocab_size() const {
    return state_->token_kinds.size();
}

std::optional<TokenId> find_token_id(const TokenizerState& state, std::string_view token_text) {
    auto find = [&state](const std::vector<TokenId>& ids,
                         std::string_view bytes) -> std::optional<TokenId> {
        const auto it = std::lower_bound(
            ids.begin(), ids.end(), bytes,
            [&state](TokenId id, std::string_view key) { return state.token_bytes(id) < key; });
        if (it == ids.end() || state.token_bytes(*it) != bytes) return std::nullopt;
        return *it;
    };
    // An added token is spelled as its literal content; a regular one in the vocabulary's
    // alphabet (byte-level: stored as the raw bytes it stands for).
    if (auto id = find(state.added_ids_by_content, token_text)) return id;
    if (!state.byte_level) return find(state.regular_ids_by_bytes, token_text);
    const std::optional<std::string> bytes = vocab_text_to_bytes(token_text);
    if (!bytes) return std::nullopt;
    return find(state.regular_ids_by_bytes, *bytes);
}

std::optional<TokenId> Tokenizer::token_id(std::string_view token_text) const {
    return find_token_id(*state_, token_text);
}

bool Tokenizer::is_special(TokenId id) const {
    return id >= 0 && static_cast<std::size_t>(id) < state_->token_kinds.size() &&
           state_->token_kinds[id] == TokenKind::kSpecial;
}

std::optional<TokenId> Tokenizer::bos_token_id() const {
    return state_->bos;
}

std::optional<TokenId> Tokenizer::eos_token_id() const {
    return state_->eos;
}

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {
    if (!tokenizer_.state_->byte_level) stream_.emplace(tokenizer_.state_->decoder);
}

std::string StreamingDetokenizer::push(TokenId id) {
    if (stream_) {
        check_id(*tokenizer_.state_, id);
        return stream_->push(tokenizer_.state_->token_bytes(id));
    }
    pending_.append(tokenizer_.token_bytes(id));
    // Everything before an incomplete trailing character decodes the same whatever follows.
    const std::size_t final_length = pending_.size() - truncated_tail_length(pending_);
    std::string text;
    append_utf8_lossy(std::string_view(pending_).substr(0, final_length), text);
    pending_.erase(0, final_length);
    return text;
}

std::string StreamingDetokenizer::finish() {
    if (stream_) return stream_->finish();
    std::string text;
    append_utf8_lossy(pending_, text);
    pending_.clear();
    return text;
}

}  // namespace llmserve::tokenizer
