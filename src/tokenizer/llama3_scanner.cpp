#include "tokenizer/llama3_scanner.h"

#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"

namespace llmserve::tokenizer {
namespace {

constexpr std::string_view kPatternHead =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|";
constexpr std::string_view kPatternTail =
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct Char {
    CharClass char_class;
    std::size_t length;
    bool is_line_break;  // \r or \n
};

Char char_at(std::string_view text, std::size_t pos) {
    const auto lead = static_cast<unsigned char>(text[pos]);
    if (lead < 0x80) return {classify_code_point(lead), 1, lead == '\r' || lead == '\n'};
    const std::size_t length = next_utf8_sequence(text, pos).length;
    return {classify_code_point(decode_code_point(text, pos, length)), length, false};
}

std::size_t run_end(std::string_view text, std::size_t pos, CharClass char_class) {
    while (pos < text.size()) {
        const Char c = char_at(text, pos);
        if (c.char_class != char_class) break;
        pos += c.length;
    }
    return pos;
}

bool is_case_insensitive(char c, char lower) {
    return c == lower || c == lower - ('a' - 'A');
}

}  // namespace

std::optional<int> Llama3Scanner::digit_limit_of(std::string_view pattern) {
    if (!pattern.starts_with(kPatternHead) || !pattern.ends_with(kPatternTail)) return std::nullopt;
    const std::string_view digits = pattern.substr(
        kPatternHead.size(), pattern.size() - kPatternHead.size() - kPatternTail.size());
    if (digits == "\\p{N}{1,3}") return 3;
    if (digits == "\\p{N}") return 1;
    return std::nullopt;
}

std::size_t Llama3Scanner::contraction_length() const {
    if (text_[pos_] != '\'' || pos_ + 1 >= text_.size()) return 0;
    const char first = text_[pos_ + 1];
    // Case-insensitive as Unicode folds: 's' also matches U+017F LATIN SMALL LETTER LONG S.
    if (text_.substr(pos_ + 1).starts_with("\xC5\xBF")) return 3;
    for (const char single : {'s', 't', 'm', 'd'}) {
        if (is_case_insensitive(first, single)) return 2;
    }
    if (pos_ + 2 >= text_.size()) return 0;
    const char second = text_[pos_ + 2];
    for (const auto& [a, b] : {std::pair{'r', 'e'}, std::pair{'v', 'e'}, std::pair{'l', 'l'}}) {
        if (is_case_insensitive(first, a) && is_case_insensitive(second, b)) return 3;
    }
    return 0;
}

std::string_view Llama3Scanner::next() {
    if (pos_ >= text_.size()) return {};
    const std::size_t start = pos_;
    if (const std::size_t length = contraction_length(); length > 0) {
        pos_ += length;
        return text_.substr(start, length);
    }
    const Char first = char_at(text_, pos_);

    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (first.char_class == CharClass::kLetter) {
        pos_ = run_end(text_, pos_, CharClass::kLetter);
        return text_.substr(start, pos_ - start);
    }
    if (first.char_class != CharClass::kNumber && !first.is_line_break &&
        pos_ + first.length < text_.size() &&
        char_at(text_, pos_ + first.length).char_class == CharClass::kLetter) {
        pos_ = run_end(text_, pos_ + first.length, CharClass::kLetter);
        return text_.substr(start, pos_ - start);
    }

    // \p{N}{1,limit}
    if (first.char_class == CharClass::kNumber) {
        pos_ += first.length;
        for (int count = 1; count < digit_limit_ && pos_ < text_.size(); ++count) {
            const Char c = char_at(text_, pos_);
            if (c.char_class != CharClass::kNumber) break;
            pos_ += c.length;
        }
        return text_.substr(start, pos_ - start);
    }

    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    std::size_t other_start = pos_;
    if (text_[pos_] == ' ' && pos_ + 1 < text_.size() &&
        char_at(text_, pos_ + 1).char_class == CharClass::kOther) {
        other_start = pos_ + 1;
    }
    if (other_start != pos_ || first.char_class == CharClass::kOther) {
        pos_ = run_end(text_, other_start, CharClass::kOther);
        while (pos_ < text_.size() && (text_[pos_] == '\r' || text_[pos_] == '\n')) ++pos_;
        return text_.substr(start, pos_ - start);
    }

    // Whitespace. \s*[\r\n]+ ends after the run's last line break; else \s+(?!\S) leaves the
    // run's last character to the next piece when a non-space follows; else \s+.
    std::size_t end = pos_;
    std::size_t last_char_start = pos_;
    std::size_t after_last_break = 0;
    std::size_t char_count = 0;
    while (end < text_.size()) {
        const Char c = char_at(text_, end);
        if (c.char_class != CharClass::kSpace) break;
        last_char_start = end;
        end += c.length;
        ++char_count;
        if (c.is_line_break) after_last_break = end;
    }
    if (after_last_break != 0) {
        end = after_last_break;
    } else if (end < text_.size() && char_count > 1) {
        end = last_char_start;
    }
    pos_ = end;
    return text_.substr(start, pos_ - start);
}

}  // namespace llmserve::tokenizer
