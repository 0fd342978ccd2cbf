#include "tokenizer/added_tokens.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstring>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"

namespace llmserve::tokenizer {
namespace {

// Rust regex's Unicode \w: letters, marks, decimal and letter numbers, connector punctuation
// and the joiners.
bool is_word_char(char32_t c) {
    if (c == 0x200C || c == 0x200D) return true;
    switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
        case UTF8PROC_CATEGORY_LU:
        case UTF8PROC_CATEGORY_LL:
        case UTF8PROC_CATEGORY_LT:
        case UTF8PROC_CATEGORY_LM:
        case UTF8PROC_CATEGORY_LO:
        case UTF8PROC_CATEGORY_MN:
        case UTF8PROC_CATEGORY_MC:
        case UTF8PROC_CATEGORY_ME:
        case UTF8PROC_CATEGORY_ND:
        case UTF8PROC_CATEGORY_NL:
        case UTF8PROC_CATEGORY_PC:
            return true;
        default:
            return false;
    }
}

// Start of the character that ends at `end` (> 0) in valid UTF-8.
std::size_t previous_char_start(std::string_view text, std::size_t end) {
    std::size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    return start;
}

char32_t char_at(std::string_view text, std::size_t pos, std::size_t* length = nullptr) {
    const std::size_t char_length = next_utf8_sequence(text, pos).length;
    if (length != nullptr) *length = char_length;
    return decode_code_point(text, pos, char_length);
}

bool is_space(char32_t c) {
    return classify_code_point(c) == CharClass::kSpace;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedTokenPattern> tokens)
    : tokens_(std::move(tokens)) {
    trie_.emplace_back();
    for (std::size_t index = 0; index < tokens_.size(); ++index) {
        const std::string& content = tokens_[index].content;
        if (content.empty()) continue;
        const auto first = static_cast<unsigned char>(content[0]);
        if (!starts_token_[first]) {
            starts_token_[first] = true;
            ++first_byte_count_;
            only_first_byte_ = first;
        }
        std::int32_t node = 0;
        for (const char c : content) {
            const auto byte = static_cast<unsigned char>(c);
            auto& children = trie_[node].children;
            auto it = std::lower_bound(
                children.begin(), children.end(), byte,
                [](const auto& child, unsigned char b) { return child.first < b; });
            if (it == children.end() || it->first != byte) {
                const auto child = static_cast<std::int32_t>(trie_.size());
                it = children.insert(it, {byte, child});
                trie_.emplace_back();  // may move `children`; only `child` is used from here
                node = child;
            } else {
                node = it->second;
            }
        }
        // A repeated content keeps its first token, as the first insertion into HF's trie does.
        if (trie_[node].token < 0) trie_[node].token = static_cast<std::int32_t>(index);
    }
}

std::pair<std::int32_t, std::size_t> AddedTokenMatcher::longest_at(std::string_view text,
                                                                   std::size_t pos) const {
    std::pair<std::int32_t, std::size_t> best{-1, 0};
    std::int32_t node = 0;
    for (std::size_t i = pos; i < text.size(); ++i) {
        const auto byte = static_cast<unsigned char>(text[i]);
        const auto& children = trie_[node].children;
        const auto it =
            std::lower_bound(children.begin(), children.end(), byte,
                             [](const auto& child, unsigned char b) { return child.first < b; });
        if (it == children.end() || it->first != byte) break;
        node = it->second;
        if (trie_[node].token >= 0) best = {trie_[node].token, i + 1 - pos};
    }
    return best;
}

void AddedTokenMatcher::split(std::string_view text,
                              const std::function<void(std::string_view, std::size_t)>& on_text,
                              const std::function<void(TokenId)>& on_token) const {
    std::size_t emitted = 0;  // end of the last match (its absorbed whitespace included)
    std::size_t pos = 0;
    while (pos < text.size()) {
        if (first_byte_count_ == 1) {
            // Most vocabularies' added tokens all start with '<': skip to it at memchr speed.
            const void* next = std::memchr(text.data() + pos, only_first_byte_, text.size() - pos);
            if (next == nullptr) break;
            pos = static_cast<const char*>(next) - text.data();
        } else if (!starts_token_[static_cast<unsigned char>(text[pos])]) {
            ++pos;
            continue;
        }
        const auto [index, length] = longest_at(text, pos);
        if (index < 0) {
            ++pos;
            continue;
        }
        const AddedTokenPattern& token = tokens_[index];
        std::size_t start = pos;
        std::size_t stop = pos + length;
        pos = stop;  // a discarded match is not retried shorter, as in HF's non-overlapping search
        if (token.single_word) {
            const bool word_before =
                start > 0 && is_word_char(char_at(text, previous_char_start(text, start)));
            const bool word_after = stop < text.size() && is_word_char(char_at(text, stop));
            if (word_before || word_after) continue;
        }
        if (token.lstrip) {
            while (start > emitted) {
                const std::size_t previous = previous_char_start(text, start);
                if (!is_space(char_at(text, previous))) break;
                start = previous;
            }
        }
        if (token.rstrip) {
            std::size_t char_length = 0;
            while (stop < text.size() && is_space(char_at(text, stop, &char_length)))
                stop += char_length;
        }
        on_text(text.substr(emitted, start - emitted), emitted);
        on_token(token.id);
        emitted = stop;
        pos = stop;
    }
    on_text(text.substr(emitted), emitted);
}

}  // namespace llmserve::tokenizer
