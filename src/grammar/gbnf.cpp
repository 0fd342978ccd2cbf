#include "grammar/gbnf.h"

#include <fmt/format.h>

#include <map>
#include <optional>

#include "common/error.h"
#include "grammar/grammar_check.h"
#include "grammar/utf8_ranges.h"

namespace llmserve::grammar {
namespace {

using Sequence = std::vector<Element>;

struct PendingRule {
    std::string name;
    std::vector<Sequence> alternatives;
    bool defined = false;
    std::size_t first_use = 0;  // offset of the first reference (for "undefined rule")
};

class Parser {
  public:
    Parser(std::string_view text, const GrammarLimits& limits) : text_(text), limits_(limits) {}

    Grammar parse() {
        skip_space(true);
        if (at_end()) fail_at(pos_, "the grammar is empty; it needs a 'root' rule");
        while (!at_end()) parse_rule();
        return finish();
    }

  private:
    [[noreturn]] void fail_at(std::size_t offset, std::string_view message) const {
        int line = 1, column = 1;
        for (std::size_t i = 0; i < offset && i < text_.size(); ++i) {
            if (text_[i] == '\n') {
                ++line;
                column = 1;
            } else {
                ++column;
            }
        }
        fail_param("grammar", "grammar: line {}, column {}: {}", line, column, message);
    }

    bool at_end() const { return pos_ >= text_.size(); }
    char peek() const { return at_end() ? '\0' : text_[pos_]; }
    static bool is_name_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_';
    }

    // Spaces, tabs and comments; newlines too when `newlines` (inside groups, after ::= and |).
    void skip_space(bool newlines) {
        while (!at_end()) {
            const char c = text_[pos_];
            if (c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r'))) {
                ++pos_;
            } else if (c == '#') {
                while (!at_end() && text_[pos_] != '\n') ++pos_;
            } else {
                break;
            }
        }
    }

    std::string parse_name() {
        const std::size_t start = pos_;
        while (!at_end() && is_name_char(text_[pos_])) ++pos_;
        if (pos_ == start)
            fail_at(start, fmt::format("expected a rule name, found {}", describe(start)));
        return std::string(text_.substr(start, pos_ - start));
    }

    std::string describe(std::size_t offset) const {
        if (offset >= text_.size()) return "the end of the grammar";
        const char c = text_[offset];
        if (c == '\n' || c == '\r') return "the end of the line";
        return fmt::format("'{}'", c);
    }

    std::uint32_t rule_index(const std::string& name, std::size_t use) {
        const auto [it, added] =
            names_.try_emplace(name, static_cast<std::uint32_t>(rules_.size()));
        if (added) rules_.push_back(PendingRule{name, {}, false, use});
        return it->second;
    }

    std::uint32_t add_generated_rule(const std::string& parent,
                                     std::vector<Sequence> alternatives) {
        if (rules_.size() >= limits_.max_rules)
            fail_at(pos_, fmt::format("the grammar needs more than {} rules", limits_.max_rules));
        const std::string name = fmt::format("{}-{}", parent, ++generated_);
        names_.emplace(name, static_cast<std::uint32_t>(rules_.size()));
        rules_.push_back(PendingRule{name, std::move(alternatives), true, 0});
        return static_cast<std::uint32_t>(rules_.size() - 1);
    }

    void count_elements(std::size_t n) {
        element_count_ += n;
        if (element_count_ > limits_.max_elements)
            fail_at(pos_, fmt::format("the grammar expands to more than {} elements",
                                      limits_.max_elements));
    }

    void parse_rule() {
        const std::size_t start = pos_;
        const std::string name = parse_name();
        skip_space(false);
        if (text_.substr(pos_, 3) != "::=")
            fail_at(pos_, fmt::format("expected '::=' after rule name '{}', found {}", name,
                                      describe(pos_)));
        pos_ += 3;
        skip_space(true);
        const std::uint32_t index = rule_index(name, start);
        if (rules_[index].defined) fail_at(start, fmt::format("rule '{}' is defined twice", name));
        auto alternatives = parse_alternatives(name, false);
        rules_[index].alternatives = std::move(alternatives);
        rules_[index].defined = true;
        skip_space(false);
        if (!at_end() && peek() != '\n' && peek() != '\r')
            fail_at(pos_, fmt::format("unexpected {} in rule '{}'", describe(pos_), name));
        skip_space(true);
    }

    std::vector<Sequence> parse_alternatives(const std::string& rule, bool nested) {
        std::vector<Sequence> alternatives;
        alternatives.push_back(parse_sequence(rule, nested));
        while (true) {
            // A line that starts with '|' continues the rule (an extension of llama.cpp's form).
            const std::size_t end_of_sequence = pos_;
            skip_space(true);
            if (peek() != '|') {
                pos_ = end_of_sequence;
                break;
            }
            ++pos_;
            skip_space(true);
            alternatives.push_back(parse_sequence(rule, nested));
        }
        return alternatives;
    }

    Sequence parse_sequence(const std::string& rule, bool nested) {
        Sequence sequence;
        while (!at_end()) {
            const std::size_t start = pos_;
            const char c = peek();
            Sequence item;
            if (c == '"') {
                item = parse_literal();
            } else if (c == '[') {
                item = parse_class(rule);
            } else if (c == '.') {
                ++pos_;
                item = class_item(rule, normalize({{0, kMaxCodePoint}}, false));
            } else if (c == '(') {
                ++pos_;
                skip_space(true);
                auto alternatives = parse_alternatives(rule, true);
                if (peek() != ')')
                    fail_at(pos_, fmt::format("expected ')' to close the group opened at offset "
                                              "{}, found {}",
                                              start, describe(pos_)));
                ++pos_;
                item = group(rule, std::move(alternatives));
            } else if (is_name_char(c)) {
                const std::string name = parse_name();
                item = {Element{Element::Kind::kRule, rule_index(name, start)}};
            } else if (c == '<') {
                fail_at(pos_, "token references (<...>) are not supported; spell the text");
            } else {
                break;
            }
            skip_space(nested);
            item = parse_repetitions(rule, std::move(item), nested);
            count_elements(item.size());
            sequence.insert(sequence.end(), item.begin(), item.end());
        }
        return sequence;
    }

    Sequence group(const std::string& rule, std::vector<Sequence> alternatives) {
        if (alternatives.size() == 1) return std::move(alternatives.front());
        return {Element{Element::Kind::kRule, add_generated_rule(rule, std::move(alternatives))}};
    }

    Sequence parse_repetitions(const std::string& rule, Sequence item, bool nested) {
        while (true) {
            const std::size_t start = pos_;
            const char c = peek();
            std::size_t min = 0;
            std::optional<std::size_t> max;
            if (c == '*') {
                ++pos_;
            } else if (c == '+') {
                ++pos_;
                min = 1;
            } else if (c == '?') {
                ++pos_;
                max = 1;
            } else if (c == '{') {
                ++pos_;
                skip_space(true);
                min = parse_count();
                skip_space(true);
                if (peek() == ',') {
                    ++pos_;
                    skip_space(true);
                    if (peek() != '}') max = parse_count();
                } else {
                    max = min;
                }
                skip_space(true);
                if (peek() != '}')
                    fail_at(pos_, fmt::format("expected '}}', found {}", describe(pos_)));
                ++pos_;
                if (max && *max < min)
                    fail_at(start, fmt::format("repetition {{{},{}}} has its maximum below its "
                                               "minimum",
                                               min, *max));
            } else {
                return item;
            }
            if (std::max(min, max.value_or(0)) > limits_.max_repetition)
                fail_at(start, fmt::format("repetition count above the limit of {}",
                                           limits_.max_repetition));
            skip_space(nested);
            item = repeat(rule, std::move(item), min, max);
        }
    }

    std::size_t parse_count() {
        const std::size_t start = pos_;
        std::size_t value = 0;
        while (!at_end() && peek() >= '0' && peek() <= '9') {
            value = std::min<std::size_t>(value * 10 + (peek() - '0'), 1'000'000'000);
            ++pos_;
        }
        if (pos_ == start)
            fail_at(start, fmt::format("expected a number, found {}", describe(start)));
        return value;
    }

    // item{min,max} with right recursion only: x* is R ::= x R | "", x{0,n} nests n optionals.
    Sequence repeat(const std::string& rule, Sequence item, std::size_t min,
                    std::optional<std::size_t> max) {
        if (item.empty()) return item;
        if (item.size() > 1)
            item = {Element{Element::Kind::kRule, add_generated_rule(rule, {item})}};
        Sequence out;
        count_elements(min * item.size());
        for (std::size_t i = 0; i < min; ++i) out.insert(out.end(), item.begin(), item.end());
        if (!max) {
            const auto star = add_generated_rule(rule, {});
            rules_[star].alternatives = {Sequence{item[0], Element{Element::Kind::kRule, star}},
                                         Sequence{}};
            out.push_back(Element{Element::Kind::kRule, star});
            return out;
        }
        std::optional<std::uint32_t> tail;
        for (std::size_t i = min; i < *max; ++i) {
            Sequence more = item;
            if (tail) more.push_back(Element{Element::Kind::kRule, *tail});
            count_elements(more.size());
            tail = add_generated_rule(rule, {std::move(more), Sequence{}});
        }
        if (tail) out.push_back(Element{Element::Kind::kRule, *tail});
        return out;
    }

    std::uint32_t byte_set(const ByteSet& set) {
        const auto [it, added] = byte_set_index_.try_emplace(set.to_string(), byte_sets_.size());
        if (added) byte_sets_.push_back(set);
        return static_cast<std::uint32_t>(it->second);
    }

    Element byte_element(std::uint8_t first, std::uint8_t last) {
        ByteSet set;
        for (int b = first; b <= last; ++b) set.set(b);
        return Element{Element::Kind::kBytes, byte_set(set)};
    }

    // One code point from the text (raw UTF-8) or from an escape.
    std::uint32_t parse_char(bool in_class) {
        const std::size_t start = pos_;
        const auto c = static_cast<unsigned char>(text_[pos_]);
        if (c == '\\') {
            ++pos_;
            if (at_end()) fail_at(start, "an escape at the end of the grammar");
            const char e = text_[pos_++];
            switch (e) {
                case 'n':
                    return '\n';
                case 'r':
                    return '\r';
                case 't':
                    return '\t';
                case '\\':
                case '"':
                case '[':
                case ']':
                case '/':
                    return static_cast<std::uint8_t>(e);
                case '-':
                case '^':
                    if (in_class) return static_cast<std::uint8_t>(e);
                    break;
                case 'x':
                    return parse_hex(2, start);
                case 'u':
                    return parse_hex(4, start);
                case 'U':
                    return parse_hex(8, start);
                default:
                    break;
            }
            fail_at(start, fmt::format("unknown escape '\\{}'", e));
        }
        if (c < 0x80) {
            ++pos_;
            return c;
        }
        const int length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
        if (length == 0 || pos_ + length > text_.size() || c > 0xF4)
            fail_at(start, "the grammar is not valid UTF-8 here");
        std::uint32_t cp = c & (0x3F >> (length - 1));
        for (int i = 1; i < length; ++i) {
            const auto next = static_cast<unsigned char>(text_[pos_ + i]);
            if ((next & 0xC0) != 0x80) fail_at(start, "the grammar is not valid UTF-8 here");
            cp = (cp << 6) | (next & 0x3F);
        }
        pos_ += length;
        return cp;
    }

    std::uint32_t parse_hex(int digits, std::size_t start) {
        std::uint32_t value = 0;
        for (int i = 0; i < digits; ++i, ++pos_) {
            const char h = peek();
            const int d = h >= '0' && h <= '9'   ? h - '0'
                          : h >= 'a' && h <= 'f' ? h - 'a' + 10
                          : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                 : -1;
            if (d < 0) fail_at(start, fmt::format("expected {} hex digits in this escape", digits));
            value = value * 16 + d;
        }
        if (value > kMaxCodePoint) fail_at(start, "code point above U+10FFFF");
        return value;
    }

    Sequence parse_literal() {
        const std::size_t start = pos_++;
        Sequence out;
        std::string bytes;
        while (true) {
            if (at_end() || peek() == '\n')
                fail_at(start, "unterminated string literal (no closing '\"' on this line)");
            if (peek() == '"') break;
            bytes.clear();
            append_utf8(parse_char(false), bytes);
            for (const char b : bytes) {
                const auto u = static_cast<std::uint8_t>(b);
                out.push_back(byte_element(u, u));
            }
        }
        ++pos_;
        return out;
    }

    Sequence parse_class(const std::string& rule) {
        const std::size_t start = pos_++;
        const bool negate = peek() == '^';
        if (negate) ++pos_;
        std::vector<CodePointRange> ranges;
        while (true) {
            if (at_end() || peek() == '\n')
                fail_at(start, "unterminated character class (no closing ']' on this line)");
            if (peek() == ']') break;
            const std::uint32_t first = parse_char(true);
            std::uint32_t last = first;
            if (peek() == '-' && pos_ + 1 < text_.size() && text_[pos_ + 1] != ']') {
                ++pos_;
                last = parse_char(true);
                if (last < first)
                    fail_at(start, fmt::format("character class range U+{:04X}-U+{:04X} is "
                                               "reversed",
                                               first, last));
            }
            ranges.push_back({first, last});
        }
        ++pos_;
        const auto set = normalize(std::move(ranges), negate);
        if (set.empty()) fail_at(start, "this character class matches no character");
        return class_item(rule, set);
    }

    // A code point set as one byte-set element (all ASCII) or a rule of UTF-8 sequences.
    Sequence class_item(const std::string& rule, const std::vector<CodePointRange>& set) {
        const auto sequences = utf8_sequences(set);
        ByteSet single;
        std::vector<Sequence> alternatives;
        for (const auto& sequence : sequences) {
            if (sequence.size() == 1) {
                for (int b = sequence[0].first; b <= sequence[0].second; ++b) single.set(b);
                continue;
            }
            Sequence alt;
            for (const auto& [first, last] : sequence) alt.push_back(byte_element(first, last));
            alternatives.push_back(std::move(alt));
        }
        if (single.any()) {
            Element e{Element::Kind::kBytes, byte_set(single)};
            if (alternatives.empty()) return {e};
            alternatives.push_back({e});
        }
        return {Element{Element::Kind::kRule, add_generated_rule(rule, std::move(alternatives))}};
    }

    Grammar finish() {
        for (const auto& rule : rules_)
            if (!rule.defined)
                fail_at(rule.first_use, fmt::format("undefined rule '{}'", rule.name));
        const auto root = names_.find("root");
        if (root == names_.end()) fail_at(text_.size(), "the grammar has no 'root' rule");
        Grammar grammar;
        grammar.byte_sets = std::move(byte_sets_);
        grammar.root = root->second;
        for (auto& pending : rules_) {
            Rule rule{pending.name, {}};
            for (const auto& alternative : pending.alternatives) {
                rule.alternatives.push_back(static_cast<std::uint32_t>(grammar.elements.size()));
                grammar.elements.insert(grammar.elements.end(), alternative.begin(),
                                        alternative.end());
                grammar.elements.push_back(Element{});
            }
            grammar.rules.push_back(std::move(rule));
        }
        grammar.source = std::string(text_);
        check_left_recursion(grammar);
        return grammar;
    }

    std::string_view text_;
    const GrammarLimits& limits_;
    std::size_t pos_ = 0;
    std::vector<PendingRule> rules_;
    std::map<std::string, std::uint32_t> names_;
    std::vector<ByteSet> byte_sets_;
    std::map<std::string, std::size_t> byte_set_index_;
    std::size_t element_count_ = 0;
    int generated_ = 0;
};

}  // namespace

Grammar parse_gbnf(std::string_view text, const GrammarLimits& limits) {
    return Parser(text, limits).parse();
}

std::string gbnf_literal(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20 || u == 0x7F) {
            out += fmt::format("\\x{:02X}", u);
        } else {
            out += c;
        }
    }
    return out + "\"";
}

}  // namespace llmserve::grammar
