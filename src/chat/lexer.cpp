#include "chat/lexer.h"

#include <algorithm>
#include <cctype>

#include "common/error.h"

namespace llmserve::chat {
namespace {

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_name_start(char c) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool is_name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

class Lexer {
  public:
    explicit Lexer(std::string_view source) : source_(source) {
        line_starts_.push_back(0);
        for (std::size_t i = 0; i < source.size(); ++i)
            if (source[i] == '\n') line_starts_.push_back(i + 1);
    }

    std::vector<Token> run() {
        bool line_starting = true;
        // What the previous tag asks of the text after it.
        enum class After { kNothing, kStripAll, kDropNewline } after = After::kNothing;
        while (pos_ < source_.size()) {
            const std::size_t tag = find_tag(pos_);
            std::string text(source_.substr(pos_, tag - pos_));
            if (after == After::kStripAll) {
                text.erase(0, std::find_if(text.begin(), text.end(), [](char c) {
                                  return !is_space(c);
                              }) - text.begin());
            } else if (after == After::kDropNewline && !text.empty() && text[0] == '\n') {
                text.erase(0, 1);
            }
            if (tag < source_.size()) {
                const char type = source_[tag + 1];
                const char sign = tag + 2 < source_.size() ? source_[tag + 2] : '\0';
                if (sign == '-') {
                    while (!text.empty() && is_space(text.back())) text.pop_back();
                } else if (sign != '+' && type != '{') {
                    strip_line_indent(text, line_starting);
                }
            }
            const SourcePos text_pos = pos_at(pos_);
            if (!text.empty()) tokens_.push_back({TokenKind::kText, std::move(text), text_pos});
            if (tag >= source_.size()) break;
            pos_ = tag + 2;
            if (pos_ < source_.size() && (source_[pos_] == '-' || source_[pos_] == '+')) ++pos_;
            const char type = source_[tag + 1];
            char end_sign = '\0';
            if (type == '#') {
                end_sign = skip_comment(tag);
            } else if (type == '%' && try_raw(tag, end_sign)) {
                // try_raw emitted the raw text.
            } else {
                end_sign = lex_tag(type == '%', tag);
            }
            const bool block_like = type != '{';
            if (end_sign == '-') {
                after = After::kStripAll;
            } else if (end_sign != '+' && block_like) {
                after = After::kDropNewline;
            } else {
                after = After::kNothing;
            }
            // Text starts a line when the tag's own match ended with a newline (Jinja's rule);
            // with kDropNewline the dropped newline counts, which the next pass consumes.
            line_starting = after == After::kDropNewline
                                ? pos_ < source_.size() && source_[pos_] == '\n'
                                : false;
            if (after == After::kStripAll) {
                std::size_t p = pos_;
                while (p < source_.size() && is_space(source_[p])) ++p;
                line_starting = p > pos_ && source_[p - 1] == '\n';
            }
        }
        tokens_.push_back({TokenKind::kEnd, "", pos_at(source_.size())});
        return std::move(tokens_);
    }

  private:
    [[noreturn]] void error_at(std::size_t offset, const std::string& what) const {
        const SourcePos pos = pos_at(offset);
        fail(ErrorCode::kInvalidArgument, "chat template: line {}:{}: {}", pos.line, pos.column,
             what);
    }

    SourcePos pos_at(std::size_t offset) const {
        const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - 1;
        return {static_cast<int>(it - line_starts_.begin()) + 1,
                static_cast<int>(offset - *it) + 1};
    }

    std::size_t find_tag(std::size_t from) const {
        for (std::size_t i = from; i + 1 < source_.size(); ++i) {
            if (source_[i] == '{' &&
                (source_[i + 1] == '{' || source_[i + 1] == '%' || source_[i + 1] == '#'))
                return i;
        }
        return source_.size();
    }

    // lstrip_blocks: drop spaces and tabs between the line's start and a block or comment tag.
    static void strip_line_indent(std::string& text, bool line_starting) {
        const std::size_t newline = text.rfind('\n');
        const std::size_t line_start = newline == std::string::npos ? 0 : newline + 1;
        if (line_start == 0 && !line_starting) return;
        for (std::size_t i = line_start; i < text.size(); ++i)
            if (!is_space(text[i])) return;
        text.erase(line_start);
    }

    // Returns the sign before "#}" ('-', '+' or '\0') and moves past it.
    char skip_comment(std::size_t tag) {
        const std::size_t end = source_.find("#}", pos_);
        if (end == std::string_view::npos) error_at(tag, "unclosed comment: missing '#}'");
        const char sign = end > pos_ && (source_[end - 1] == '-' || source_[end - 1] == '+')
                              ? source_[end - 1]
                              : '\0';
        pos_ = end + 2;
        return sign;
    }

    // {% raw %}...{% endraw %}: the text between is data, tags and all.
    bool try_raw(std::size_t tag, char& end_sign) {
        std::size_t p = pos_;
        while (p < source_.size() && is_space(source_[p])) ++p;
        if (source_.substr(p, 3) != "raw" ||
            (p + 3 < source_.size() && is_name_char(source_[p + 3])))
            return false;
        p += 3;
        while (p < source_.size() && is_space(source_[p])) ++p;
        if (p < source_.size() && (source_[p] == '-' || source_[p] == '+')) ++p;
        if (source_.substr(p, 2) != "%}") error_at(tag, "expected '%}' after 'raw'");
        const std::size_t body = p + 2;
        for (std::size_t at = source_.find("{%", body); at != std::string_view::npos;
             at = source_.find("{%", at + 2)) {
            std::size_t q = at + 2;
            const bool strip_before = q < source_.size() && source_[q] == '-';
            if (q < source_.size() && (source_[q] == '-' || source_[q] == '+')) ++q;
            while (q < source_.size() && is_space(source_[q])) ++q;
            if (source_.substr(q, 6) != "endraw") continue;
            q += 6;
            while (q < source_.size() && is_space(source_[q])) ++q;
            end_sign = '\0';
            if (q < source_.size() && (source_[q] == '-' || source_[q] == '+'))
                end_sign = source_[q++];
            if (source_.substr(q, 2) != "%}") error_at(at, "expected '%}' after 'endraw'");
            std::string text(source_.substr(body, at - body));
            if (strip_before)
                while (!text.empty() && is_space(text.back())) text.pop_back();
            if (!text.empty()) tokens_.push_back({TokenKind::kText, std::move(text), pos_at(body)});
            pos_ = q + 2;
            return true;
        }
        error_at(tag, "unclosed 'raw' block: missing '{% endraw %}'");
    }

    // The tokens inside {% %} or {{ }}; returns the sign before the closing delimiter.
    char lex_tag(bool block, std::size_t tag) {
        tokens_.push_back({block ? TokenKind::kBlockBegin : TokenKind::kVarBegin, "", pos_at(tag)});
        const char closer = block ? '%' : '}';
        int depth = 0;  // open brackets: a '}}' inside a dict literal does not end the tag
        while (true) {
            while (pos_ < source_.size() && is_space(source_[pos_])) ++pos_;
            if (pos_ >= source_.size())
                error_at(tag, block ? "unclosed tag: missing '%}'" : "unclosed tag: missing '}}'");
            const std::size_t start = pos_;
            const char c = source_[pos_];
            const auto closes_at = [&](std::size_t p) {
                return depth == 0 && p + 1 < source_.size() && source_[p] == closer &&
                       source_[p + 1] == '}';
            };
            if ((c == '-' || c == '+') && closes_at(pos_ + 1)) {
                pos_ += 3;
                tokens_.push_back(
                    {block ? TokenKind::kBlockEnd : TokenKind::kVarEnd, "", pos_at(start)});
                return c;
            }
            if (closes_at(pos_)) {
                pos_ += 2;
                tokens_.push_back(
                    {block ? TokenKind::kBlockEnd : TokenKind::kVarEnd, "", pos_at(start)});
                return '\0';
            }
            if (is_name_start(c)) {
                while (pos_ < source_.size() && is_name_char(source_[pos_])) ++pos_;
                tokens_.push_back({TokenKind::kName,
                                   std::string(source_.substr(start, pos_ - start)),
                                   pos_at(start)});
            } else if (is_digit(c)) {
                lex_number(start);
            } else if (c == '\'' || c == '"') {
                lex_string(start);
            } else {
                lex_operator(start, depth);
            }
        }
    }

    void lex_number(std::size_t start) {
        const auto digits = [&] {
            while (pos_ < source_.size() && (is_digit(source_[pos_]) || source_[pos_] == '_'))
                ++pos_;
        };
        digits();
        bool is_float = false;
        // After '.', "x.0.1" is two attribute lookups, not a float.
        const bool after_dot = !tokens_.empty() && tokens_.back().kind == TokenKind::kOperator &&
                               tokens_.back().text == ".";
        if (!after_dot && pos_ + 1 < source_.size() && source_[pos_] == '.' &&
            is_digit(source_[pos_ + 1])) {
            ++pos_;
            digits();
            is_float = true;
        }
        if (!after_dot && pos_ < source_.size() && (source_[pos_] == 'e' || source_[pos_] == 'E')) {
            std::size_t p = pos_ + 1;
            if (p < source_.size() && (source_[p] == '+' || source_[p] == '-')) ++p;
            if (p < source_.size() && is_digit(source_[p])) {
                pos_ = p;
                digits();
                is_float = true;
            }
        }
        std::string text;
        for (const char ch : source_.substr(start, pos_ - start))
            if (ch != '_') text += ch;
        tokens_.push_back(
            {is_float ? TokenKind::kFloat : TokenKind::kInteger, std::move(text), pos_at(start)});
    }

    void lex_string(std::size_t start) {
        const char quote = source_[pos_++];
        std::string text;
        while (true) {
            if (pos_ >= source_.size()) error_at(start, "unterminated string literal");
            const char c = source_[pos_++];
            if (c == quote) break;
            if (c != '\\') {
                text += c;
                continue;
            }
            if (pos_ >= source_.size()) error_at(start, "unterminated string literal");
            const char e = source_[pos_++];
            switch (e) {
                case 'n':
                    text += '\n';
                    break;
                case 't':
                    text += '\t';
                    break;
                case 'r':
                    text += '\r';
                    break;
                case '0':
                    text += '\0';
                    break;
                case 'b':
                    text += '\b';
                    break;
                case 'f':
                    text += '\f';
                    break;
                case 'v':
                    text += '\v';
                    break;
                case 'a':
                    text += '\a';
                    break;
                case '\\':
                    text += '\\';
                    break;
                case '\'':
                    text += '\'';
                    break;
                case '"':
                    text += '"';
                    break;
                case '\n':
                    break;  // a backslash-newline continues the literal
                case 'x':
                    append_code_point(text, read_hex(2, start));
                    break;
                case 'u':
                    append_code_point(text, read_hex(4, start));
                    break;
                case 'U':
                    append_code_point(text, read_hex(8, start));
                    break;
                default:
                    text += '\\';
                    text += e;
            }
        }
        tokens_.push_back({TokenKind::kString, std::move(text), pos_at(start)});
    }

    std::uint32_t read_hex(int count, std::size_t start) {
        std::uint32_t value = 0;
        for (int i = 0; i < count; ++i) {
            if (pos_ >= source_.size() || !std::isxdigit(static_cast<unsigned char>(source_[pos_])))
                error_at(start, "truncated \\x, \\u or \\U escape in a string literal");
            const char h = source_[pos_++];
            value = value * 16 + static_cast<std::uint32_t>(
                                     is_digit(h) ? h - '0' : (std::tolower(h) - 'a' + 10));
        }
        if (value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF))
            error_at(start, "escape is not a valid Unicode scalar value");
        return value;
    }

    static void append_code_point(std::string& out, std::uint32_t code) {
        if (code < 0x80) {
            out += static_cast<char>(code);
        } else if (code < 0x800) {
            out += static_cast<char>(0xC0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3F));
        } else if (code < 0x10000) {
            out += static_cast<char>(0xE0 | (code >> 12));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (code & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (code >> 18));
            out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (code & 0x3F));
        }
    }

    void lex_operator(std::size_t start, int& depth) {
        static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", "<=", ">="};
        const std::string_view rest = source_.substr(pos_);
        for (const std::string_view op : kTwoChar) {
            if (rest.substr(0, 2) == op) {
                pos_ += 2;
                tokens_.push_back({TokenKind::kOperator, std::string(op), pos_at(start)});
                return;
            }
        }
        const char c = source_[pos_];
        if (std::string_view("+-*/%~<>=()[]{},.:|").find(c) == std::string_view::npos)
            error_at(start, "unexpected character '" + std::string(1, c) + "'");
        if (c == '(' || c == '[' || c == '{') ++depth;
        if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
        ++pos_;
        tokens_.push_back({TokenKind::kOperator, std::string(1, c), pos_at(start)});
    }

    std::string_view source_;
    std::size_t pos_ = 0;
    std::vector<std::size_t> line_starts_;
    std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize_template(std::string_view source) {
    // As Jinja2: every \r\n and \r becomes \n, and one trailing newline is dropped
    // (keep_trailing_newline is off).
    std::string normalized;
    normalized.reserve(source.size());
    for (std::size_t i = 0; i < source.size(); ++i) {
        if (source[i] == '\r') {
            normalized += '\n';
            if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
        } else {
            normalized += source[i];
        }
    }
    if (!normalized.empty() && normalized.back() == '\n') normalized.pop_back();
    return Lexer(normalized).run();
}

}  // namespace llmserve::chat
