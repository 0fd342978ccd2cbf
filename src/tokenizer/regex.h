// A compiled PCRE2 regular expression (UTF-8, Unicode properties, JIT when available) for the
// Split pre-tokenizer and Replace normalizer patterns of tokenizer.json, which Hugging Face
// tokenizers evaluates with Oniguruma.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace llmserve::tokenizer {

struct Match {
    std::size_t start;
    std::size_t end;
};

class Regex {
  public:
    // Throws Error kUnsupported naming `source` when PCRE2 rejects the pattern. `\s` and `\S`
    // are rewritten to Unicode's White_Space property, as Oniguruma reads them (PCRE2's own \s
    // differs on U+0085 and U+180E).
    Regex(std::string_view pattern, std::string_view source);

    // The leftmost match in `valid_utf8` starting at or after `from`, or nullopt.
    std::optional<Match> find(std::string_view valid_utf8, std::size_t from) const;

    const std::string& pattern() const { return pattern_; }

  private:
    struct Compiled;
    std::string pattern_;
    std::shared_ptr<const Compiled> compiled_;
};

// `pattern` with every `\s` / `\S` (inside or outside a character class) spelled as the explicit
// White_Space class; exposed for tests.
std::string rewrite_whitespace_classes(std::string_view pattern);

}  // namespace llmserve::tokenizer
