#include "tokenizer/decoder.h"

#include "tokenizer/utf8.h"

namespace llmserve::tokenizer {
namespace {

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";

// The byte of a "<0xNN>" token (HF's ByteFallback accepts either case of hex digit).
int fallback_byte(std::string_view token) {
    if (token.size() != 6 || !token.starts_with("<0x") || token[5] != '>') return -1;
    int value = 0;
    for (const char c : token.substr(3, 2)) {
        value <<= 4;
        if (c >= '0' && c <= '9') {
            value |= c - '0';
        } else if (c >= 'a' && c <= 'f') {
            value |= c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            value |= c - 'A' + 10;
        } else {
            return -1;
        }
    }
    return value;
}

std::string replace_all(std::string_view text, std::string_view pattern,
                        std::string_view replacement) {
    std::string out;
    std::size_t pos = 0;
    while (true) {
        const std::size_t found =
            pattern.empty() ? std::string_view::npos : text.find(pattern, pos);
        if (found == std::string_view::npos) break;
        out.append(text.substr(pos, found - pos)).append(replacement);
        pos = found + pattern.size();
    }
    out.append(text.substr(pos));
    return out;
}

// HF's Strip decoder on one token: up to `start` leading and `stop` trailing `content`
// characters removed.
std::string strip_token(std::string_view token, std::string_view content, std::size_t start,
                        std::size_t stop) {
    if (content.empty()) return std::string(token);
    for (std::size_t i = 0; i < start && token.starts_with(content); ++i)
        token.remove_prefix(content.size());
    for (std::size_t i = 0; i < stop && token.ends_with(content); ++i)
        token.remove_suffix(content.size());
    return std::string(token);
}

}  // namespace

std::string render_token(const DecoderChain& chain, std::string_view token) {
    std::string text(token);
    for (const DecoderStep& step : chain.per_token) {
        switch (step.kind) {
            case DecoderStep::Kind::kReplace:
                text = replace_all(text, step.pattern, step.content);
                break;
            case DecoderStep::Kind::kStrip:
                text = strip_token(text, step.content, step.start, step.stop);
                break;
            case DecoderStep::Kind::kMetaspace:
                text = replace_all(text, step.pattern, " ");
                break;
            case DecoderStep::Kind::kByteFallback:
                if (const int byte = fallback_byte(text); byte >= 0)
                    text = std::string(1, static_cast<char>(byte));
                break;
        }
    }
    return text;
}

DecodeStream::DecodeStream(const DecoderChain& chain)
    : chain_(&chain),
      tokens_seen_(chain.per_token.size(), 0),
      pending_bytes_(chain.per_token.size()) {}

std::string DecodeStream::push(std::string_view token) {
    std::string out;
    feed(0, std::string(token), out);
    return out;
}

std::string DecodeStream::finish() {
    std::string out;
    for (std::size_t index = 0; index < chain_->per_token.size(); ++index) flush_bytes(index, out);
    if (chain_->fused) {
        // The end of the text: up to fused_strip_stop of the held-back characters go.
        std::string_view held = held_back_;
        for (std::size_t i = 0;
             i < chain_->fused_strip_stop && held.ends_with(chain_->fused_strip_content); ++i) {
            held.remove_suffix(chain_->fused_strip_content.size());
        }
        out.append(held);
    }
    std::fill(tokens_seen_.begin(), tokens_seen_.end(), 0);
    fused_stripped_ = 0;
    fused_started_ = false;
    held_back_.clear();
    return out;
}

void DecodeStream::feed(std::size_t index, std::string token, std::string& out) {
    if (index == chain_->per_token.size()) {
        emit(token, out);
        return;
    }
    const DecoderStep& step = chain_->per_token[index];
    switch (step.kind) {
        case DecoderStep::Kind::kReplace:
            feed(index + 1, replace_all(token, step.pattern, step.content), out);
            return;
        case DecoderStep::Kind::kStrip:
            feed(index + 1, strip_token(token, step.content, step.start, step.stop), out);
            return;
        case DecoderStep::Kind::kMetaspace: {
            // HF drops every replacement character of the first token, spaces elsewhere.
            const bool first = tokens_seen_[index]++ == 0;
            feed(index + 1,
                 replace_all(token, step.pattern, first && step.drop_in_first ? "" : " "), out);
            return;
        }
        case DecoderStep::Kind::kByteFallback:
            if (const int byte = fallback_byte(token); byte >= 0) {
                pending_bytes_[index].push_back(static_cast<char>(byte));
                return;
            }
            flush_bytes(index, out);
            feed(index + 1, std::move(token), out);
            return;
    }
}

void DecodeStream::flush_bytes(std::size_t index, std::string& out) {
    std::string& bytes = pending_bytes_[index];
    if (bytes.empty()) return;
    const std::string group = std::move(bytes);
    bytes.clear();
    // Valid UTF-8 is one token; otherwise each byte becomes its own U+FFFD token.
    if (is_valid_utf8(group)) {
        feed(index + 1, group, out);
    } else {
        for (std::size_t i = 0; i < group.size(); ++i)
            feed(index + 1, std::string(kReplacementCharacter), out);
    }
}

void DecodeStream::emit(std::string_view text, std::string& out) {
    if (!chain_->fused || chain_->fused_strip_content.empty()) {
        out.append(text);
        return;
    }
    const std::string_view strip = chain_->fused_strip_content;
    while (!text.empty()) {
        if (text.starts_with(strip)) {
            if (!fused_started_ && fused_stripped_ < chain_->fused_strip_start) {
                ++fused_stripped_;  // a leading character of the whole text
            } else {
                held_back_.append(strip);  // may turn out to be trailing
            }
            text.remove_prefix(strip.size());
            continue;
        }
        fused_started_ = true;
        out.append(held_back_);
        held_back_.clear();
        const std::size_t length = next_utf8_sequence(text, 0).length;
        out.append(text.substr(0, length));
        text.remove_prefix(length);
    }
    // Held-back characters beyond what the end could remove are final.
    const std::size_t keep = chain_->fused_strip_stop * strip.size();
    if (held_back_.size() > keep) {
        out.append(held_back_.substr(0, held_back_.size() - keep));
        held_back_.erase(0, held_back_.size() - keep);
    }
}

}  // namespace llmserve::tokenizer
