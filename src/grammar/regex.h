// Regular expressions (the subset JSON Schema's `pattern` and vLLM's `guided_regex` use) as GBNF:
// literals, escapes (\d \w \s and their negations, \n \t \r \f \v \0, \xHH, \uHHHH, escaped
// punctuation), [classes] with ranges and negation, `.` (any character but newline), groups
// ((...), (?:...), (?<name>...)), alternation, * + ? {m} {m,} {m,n} (lazy forms too: they match
// the same strings), and anchors ^ $ at the ends of the pattern's top-level branches.
// Backreferences, lookaround, word boundaries, Unicode properties and inline flags are refused
// by name: they are not context-free, or not supported.
#pragma once

#include <string>
#include <string_view>

namespace llmserve::grammar {

enum class RegexMode {
    kFullMatch,   // the output is exactly a string the pattern matches (guided_regex)
    kJsonString,  // JSON Schema `pattern`: the content of a JSON string that contains a match
                  // (anchors pin it), each character spelled as JSON serializers do
};

// A parenthesized GBNF expression. Throws Error(kInvalidArgument, param "regex") naming the
// construct and its offset in the pattern.
std::string regex_to_gbnf(std::string_view pattern, RegexMode mode);

}  // namespace llmserve::grammar
