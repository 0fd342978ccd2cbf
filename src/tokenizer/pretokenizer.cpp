#include "tokenizer/pretokenizer.h"

#include <utf8proc.h>

#include <array>
#include <cstdint>

#include "tokenizer/utf8.h"

namespace llmserve::tokenizer {
namespace {

// Unicode's White_Space property (PropList.txt); note U+001C..U+001F are not in it.
constexpr bool is_white_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

CharClass classify_by_category(char32_t c) {
    switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
        case UTF8PROC_CATEGORY_LU:
        case UTF8PROC_CATEGORY_LL:
        case UTF8PROC_CATEGORY_LT:
        case UTF8PROC_CATEGORY_LM:
        case UTF8PROC_CATEGORY_LO:
            return CharClass::kLetter;
        case UTF8PROC_CATEGORY_ND:
        case UTF8PROC_CATEGORY_NL:
        case UTF8PROC_CATEGORY_NO:
            return CharClass::kNumber;
        default:
            return CharClass::kOther;
    }
}

constexpr std::array<CharClass, 128> make_ascii_classes() {
    std::array<CharClass, 128> table{};
    for (char32_t c = 0; c < 128; ++c) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            table[c] = CharClass::kLetter;
        } else if (c >= '0' && c <= '9') {
            table[c] = CharClass::kNumber;
        } else if (is_white_space(c)) {
            table[c] = CharClass::kSpace;
        } else {
            table[c] = CharClass::kOther;
        }
    }
    return table;
}

// Most text is ASCII: classify it without a utf8proc lookup.
constexpr std::array<CharClass, 128> kAsciiClasses = make_ascii_classes();

}  // namespace

CharClass classify_code_point(char32_t c) {
    if (c < 128) return kAsciiClasses[c];
    if (is_white_space(c)) return CharClass::kSpace;
    return classify_by_category(c);
}

PieceScanner::ClassifiedChar PieceScanner::char_at(std::size_t pos) const {
    const auto lead = static_cast<std::uint8_t>(text_[pos]);
    if (lead < 0x80) return {kAsciiClasses[lead], 1};
    const Utf8Sequence seq = next_utf8_sequence(text_, pos);
    return {classify_code_point(decode_code_point(text_, pos, seq.length)), seq.length};
}

std::size_t PieceScanner::contraction_length() const {
    // 's 't 're 've 'm 'll 'd, case-sensitive; a longer match wins only because no two overlap.
    if (text_[pos_] != '\'' || pos_ + 1 >= text_.size()) return 0;
    const char first = text_[pos_ + 1];
    if (first == 's' || first == 't' || first == 'm' || first == 'd') return 2;
    if (pos_ + 2 >= text_.size()) return 0;
    const char second = text_[pos_ + 2];
    if ((first == 'r' && second == 'e') || (first == 'v' && second == 'e') ||
        (first == 'l' && second == 'l')) {
        return 3;
    }
    return 0;
}

std::size_t PieceScanner::run_end(std::size_t pos, CharClass char_class) const {
    while (pos < text_.size()) {
        const ClassifiedChar c = char_at(pos);
        if (c.char_class != char_class) break;
        pos += c.length;
    }
    return pos;
}

std::string_view PieceScanner::next() {
    if (pos_ >= text_.size()) return {};
    const std::size_t start = pos_;
    if (const std::size_t length = contraction_length(); length > 0) {
        pos_ += length;
        return text_.substr(start, length);
    }

    // " ?\p{L}+", " ?\p{N}+" and " ?[^\s\p{L}\p{N}]+": an optional U+0020, then a run of one
    // class. The space only joins when a non-space follows it.
    const ClassifiedChar first = char_at(pos_);
    std::size_t run_start = pos_;
    CharClass run_class = first.char_class;
    if (text_[pos_] == ' ' && pos_ + 1 < text_.size()) {
        const ClassifiedChar second = char_at(pos_ + 1);
        if (second.char_class != CharClass::kSpace) {
            run_start = pos_ + 1;
            run_class = second.char_class;
        }
    }
    if (run_class != CharClass::kSpace) {
        pos_ = run_end(run_start, run_class);
        return text_.substr(start, pos_ - start);
    }

    // "\s+(?!\S)|\s+": a whitespace run followed by a non-space gives up its last character (so
    // that " word" stays together) unless that would leave the run empty.
    std::size_t end = pos_;
    std::size_t last_char_start = pos_;
    std::size_t char_count = 0;
    while (end < text_.size()) {
        const ClassifiedChar c = char_at(end);
        if (c.char_class != CharClass::kSpace) break;
        last_char_start = end;
        end += c.length;
        ++char_count;
    }
    if (end < text_.size() && char_count > 1) end = last_char_start;
    pos_ = end;
    return text_.substr(start, pos_ - start);
}

}  // namespace llmserve::tokenizer
