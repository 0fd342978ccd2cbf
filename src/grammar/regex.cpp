#include "grammar/regex.h"

#include <fmt/format.h>

#include "common/error.h"
#include "grammar/gbnf.h"
#include "grammar/utf8_ranges.h"

namespace llmserve::grammar {
namespace {

using Set = std::vector<CodePointRange>;

constexpr std::size_t kMaxPatternBytes = 16 * 1024;

Set digit_set() {
    return {{'0', '9'}};
}
Set word_set() {
    return {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
}
Set space_set() {
    return {{'\t', '\r'}, {' ', ' '}};
}

std::string class_char(std::uint32_t cp) {
    if ((cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
        return std::string(1, static_cast<char>(cp));
    if (cp <= 0xFF) return fmt::format("\\x{:02X}", cp);
    if (cp <= 0xFFFF) return fmt::format("\\u{:04X}", cp);
    return fmt::format("\\U{:08X}", cp);
}

std::string gbnf_class(const Set& set) {
    std::string out = "[";
    for (const auto& r : set) {
        out += class_char(r.first);
        if (r.last != r.first) out += "-" + class_char(r.last);
    }
    return out + "]";
}

// How a JSON serializer spells a character that must be escaped in a string (as nlohmann::json
// and JSON.stringify do).
std::string json_escape(std::uint32_t cp) {
    switch (cp) {
        case '"':
            return "\\\"";
        case '\\':
            return "\\\\";
        case '\b':
            return "\\b";
        case '\f':
            return "\\f";
        case '\n':
            return "\\n";
        case '\r':
            return "\\r";
        case '\t':
            return "\\t";
        default:
            return fmt::format("\\u{:04x}", cp);
    }
}

// A set of characters as GBNF; in a JSON string the characters JSON escapes are spelled escaped.
std::string emit_set(Set set, RegexMode mode) {
    set = normalize(std::move(set), false);
    if (mode == RegexMode::kFullMatch) return gbnf_class(set);
    Set plain;
    std::vector<std::string> escaped;
    for (const auto& r : set) {
        for (std::uint32_t cp = r.first; cp <= std::min<std::uint32_t>(r.last, 0x5C); ++cp)
            if (cp < 0x20 || cp == '"' || cp == '\\')
                escaped.push_back(gbnf_literal(json_escape(cp)));
        // The plain part: r minus the escaped code points.
        std::uint32_t first = r.first;
        for (const std::uint32_t cut : {0x1Fu, 0x22u, 0x5Cu}) {
            if (first > r.last) break;
            const std::uint32_t cut_first = cut == 0x1F ? 0 : cut;
            if (cut < first) continue;
            if (cut_first > first) plain.push_back({first, std::min(r.last, cut_first - 1)});
            first = cut + 1;
        }
        if (first <= r.last) plain.push_back({first, r.last});
    }
    std::string out = "(";
    if (!plain.empty()) out += gbnf_class(plain);
    for (const auto& e : escaped) out += (out.size() > 1 ? " | " : "") + e;
    return out + ")";
}

class RegexCompiler {
  public:
    RegexCompiler(std::string_view pattern, RegexMode mode) : p_(pattern), mode_(mode) {}

    std::string compile() {
        if (p_.size() > kMaxPatternBytes)
            fail_at(0, fmt::format("the pattern is longer than {} bytes", kMaxPatternBytes));
        std::string out = "(";
        bool first = true;
        do {
            if (!first) ++pos_;
            out += (first ? "" : " | ") + top_branch();
            first = false;
        } while (peek() == '|');
        if (pos_ < p_.size()) fail_at(pos_, "unbalanced ')'");
        return out + ")";
    }

  private:
    [[noreturn]] void fail_at(std::size_t offset, std::string_view message) const {
        fail_param("regex", "regex: at offset {} of /{}/: {}", offset, p_, message);
    }
    char peek() const { return pos_ < p_.size() ? p_[pos_] : '\0'; }
    bool at_end() const { return pos_ >= p_.size(); }

    // A top-level branch with its anchors; in a JSON string an unanchored end may be preceded or
    // followed by anything (JSON Schema patterns search).
    std::string top_branch() {
        const bool start_anchor = peek() == '^';
        if (start_anchor) ++pos_;
        std::string body = branch();
        bool end_anchor = false;
        if (peek() == '$') {
            ++pos_;
            end_anchor = true;
            if (!at_end() && peek() != '|') fail_at(pos_ - 1, "'$' is only supported at the end");
        }
        if (mode_ == RegexMode::kFullMatch) return body;
        const std::string any = emit_set({{0, kMaxCodePoint}}, mode_) + "*";
        return (start_anchor ? "" : any + " ") + body + (end_anchor ? "" : " " + any);
    }

    std::string alternation() {
        std::string out = "(" + branch();
        while (peek() == '|') {
            ++pos_;
            out += " | " + branch();
        }
        return out + ")";
    }

    std::string branch() {
        std::string out;
        while (!at_end() && peek() != '|' && peek() != ')') {
            if (peek() == '$') {
                if (depth_ == 0) break;
                fail_at(pos_, "'$' is only supported at the end of the pattern");
            }
            if (peek() == '^') fail_at(pos_, "'^' is only supported at the start of the pattern");
            std::string atom_text = atom();
            out += (out.empty() ? "" : " ") + quantified(std::move(atom_text));
        }
        return out.empty() ? "\"\"" : "(" + out + ")";
    }

    std::string quantified(std::string atom_text) {
        while (true) {
            const std::size_t start = pos_;
            const char c = peek();
            std::string q;
            if (c == '*' || c == '+' || c == '?') {
                ++pos_;
                q = std::string(1, c);
            } else if (c == '{' && is_counted_quantifier()) {
                const std::size_t close = p_.find('}', pos_);
                q = std::string(p_.substr(pos_, close + 1 - pos_));
                pos_ = close + 1;
            } else {
                return atom_text;
            }
            if (peek() == '?') ++pos_;  // lazy: the same language
            if (peek() == '+') fail_at(pos_, "possessive quantifiers are not supported");
            if (peek() == '*' || peek() == '+' || (peek() == '{' && is_counted_quantifier()))
                fail_at(start, "a quantifier may not follow a quantifier");
            atom_text = "(" + atom_text + ")" + q;
        }
    }

    bool is_counted_quantifier() const {
        std::size_t i = pos_ + 1;
        const auto digits = [&] {
            const std::size_t s = i;
            while (i < p_.size() && p_[i] >= '0' && p_[i] <= '9') ++i;
            return i > s;
        };
        if (!digits()) return false;
        if (i < p_.size() && p_[i] == ',') {
            ++i;
            digits();
        }
        return i < p_.size() && p_[i] == '}';
    }

    std::string atom() {
        const std::size_t start = pos_;
        const char c = peek();
        if (c == '*' || c == '+' || c == '?') fail_at(start, "nothing to repeat");
        if (c == '(') {
            ++pos_;
            if (peek() == '?') {
                const std::string_view rest = p_.substr(pos_);
                if (rest.starts_with("?:")) {
                    pos_ += 2;
                } else if (rest.starts_with("?=") || rest.starts_with("?!") ||
                           rest.starts_with("?<=") || rest.starts_with("?<!")) {
                    fail_at(start, "lookaround assertions are not supported");
                } else if (rest.starts_with("?<") || rest.starts_with("?P<")) {
                    const std::size_t close = p_.find('>', pos_);
                    if (close == std::string_view::npos) fail_at(start, "unterminated group name");
                    pos_ = close + 1;
                } else {
                    fail_at(start, "inline flags and other (? groups are not supported");
                }
            }
            ++depth_;
            std::string inner = alternation();
            --depth_;
            if (peek() != ')') fail_at(start, "unterminated group");
            ++pos_;
            return inner;
        }
        if (c == '[') return emit_set(parse_class(), mode_);
        if (c == '.') {
            ++pos_;
            return emit_set(normalize({{'\n', '\n'}}, true), mode_);
        }
        if (c == '\\') {
            Set set = parse_escape(false);
            return emit_set(std::move(set), mode_);
        }
        const std::uint32_t cp = next_code_point();
        return emit_set({{cp, cp}}, mode_);
    }

    std::uint32_t next_code_point() {
        const std::size_t start = pos_;
        const auto c = static_cast<unsigned char>(p_[pos_]);
        const int length = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
        if (length == 0 || pos_ + length > p_.size()) fail_at(start, "the pattern is not UTF-8");
        std::uint32_t cp = length == 1 ? c : c & (0x3F >> (length - 1));
        for (int i = 1; i < length; ++i) {
            const auto next = static_cast<unsigned char>(p_[pos_ + i]);
            if ((next & 0xC0) != 0x80) fail_at(start, "the pattern is not UTF-8");
            cp = (cp << 6) | (next & 0x3F);
        }
        pos_ += length;
        if (cp > kMaxCodePoint) fail_at(start, "the pattern is not UTF-8");
        return cp;
    }

    std::uint32_t hex(int digits, std::size_t start) {
        std::uint32_t value = 0;
        for (int i = 0; i < digits; ++i, ++pos_) {
            const char h = peek();
            const int d = h >= '0' && h <= '9'   ? h - '0'
                          : h >= 'a' && h <= 'f' ? h - 'a' + 10
                          : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                 : -1;
            if (d < 0) fail_at(start, fmt::format("expected {} hex digits", digits));
            value = value * 16 + d;
        }
        return value;
    }

    // After a backslash; returns the set it stands for.
    Set parse_escape(bool in_class) {
        const std::size_t start = pos_++;
        if (at_end()) fail_at(start, "a backslash at the end of the pattern");
        const char e = p_[pos_++];
        switch (e) {
            case 'd':
                return digit_set();
            case 'w':
                return word_set();
            case 's':
                return space_set();
            case 'D':
                return normalize(digit_set(), true);
            case 'W':
                return normalize(word_set(), true);
            case 'S':
                return normalize(space_set(), true);
            case 'n':
                return {{'\n', '\n'}};
            case 't':
                return {{'\t', '\t'}};
            case 'r':
                return {{'\r', '\r'}};
            case 'f':
                return {{'\f', '\f'}};
            case 'v':
                return {{'\v', '\v'}};
            case '0':
                return {{0, 0}};
            case 'x': {
                const std::uint32_t v = hex(2, start);
                return {{v, v}};
            }
            case 'u': {
                const std::uint32_t v = hex(4, start);
                return {{v, v}};
            }
            case 'b':
                if (in_class) return {{'\b', '\b'}};
                fail_at(start, "word boundaries (\\b) are not supported");
            case 'B':
                fail_at(start, "word boundaries (\\B) are not supported");
            case 'k':
                fail_at(start, "backreferences (\\k<name>) are not supported");
            case 'p':
            case 'P':
                fail_at(start, "Unicode property classes (\\p, \\P) are not supported");
            default:
                break;
        }
        if (e >= '1' && e <= '9') fail_at(start, "backreferences (\\1 ...) are not supported");
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z'))
            fail_at(start, fmt::format("unknown escape '\\{}'", e));
        --pos_;
        const std::uint32_t cp = next_code_point();
        return {{cp, cp}};
    }

    // One character of a class, or the set an escape like \d stands for.
    Set class_member() {
        if (peek() == '\\') return parse_escape(true);
        const std::uint32_t cp = next_code_point();
        return {{cp, cp}};
    }

    Set parse_class() {
        const std::size_t start = pos_++;
        const bool negate = peek() == '^';
        if (negate) ++pos_;
        Set set;
        bool first = true;
        while (true) {
            if (at_end()) fail_at(start, "unterminated character class");
            if (peek() == ']' && !first) break;
            first = false;
            Set item = class_member();
            if (peek() == '-' && pos_ + 1 < p_.size() && p_[pos_ + 1] != ']' && item.size() == 1 &&
                item[0].first == item[0].last) {
                ++pos_;
                const Set upper = class_member();
                if (upper.size() != 1 || upper[0].first != upper[0].last)
                    fail_at(start, "a class range must end in a single character");
                if (upper[0].first < item[0].first) fail_at(start, "a class range is reversed");
                item[0].last = upper[0].first;
            }
            set.insert(set.end(), item.begin(), item.end());
        }
        ++pos_;
        set = normalize(std::move(set), negate);
        if (set.empty()) fail_at(start, "this character class matches no character");
        return set;
    }

    std::string_view p_;
    RegexMode mode_;
    std::size_t pos_ = 0;
    int depth_ = 0;
};

}  // namespace

std::string regex_to_gbnf(std::string_view pattern, RegexMode mode) {
    return RegexCompiler(pattern, mode).compile();
}

}  // namespace llmserve::grammar
