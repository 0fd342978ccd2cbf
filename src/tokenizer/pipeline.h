// The text stages of tokenizer.json before the model: normalizers and pre-tokenizers, each a list
// of steps applied in order with Hugging Face tokenizers' semantics.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace llmserve::tokenizer {

// What a Split step or a Replace normalizer looks for: a literal string or a regex.
struct TextPattern {
    std::string literal;  // used when regex is null
    std::shared_ptr<const Regex> regex;
    // The leftmost occurrence at or after `from`.
    std::optional<Match> find(std::string_view valid_utf8, std::size_t from) const;
};

struct NormalizerStep {
    enum class Kind { kNfc, kNfd, kNfkc, kNfkd, kPrepend, kReplace, kStrip };
    Kind kind;
    std::string text;          // kPrepend: what to prepend; kReplace: the replacement
    TextPattern pattern;       // kReplace
    bool strip_left = false;   // kStrip
    bool strip_right = false;  // kStrip
};

class Normalizer {
  public:
    explicit Normalizer(std::vector<NormalizerStep> steps = {}) : steps_(std::move(steps)) {}
    bool empty() const { return steps_.empty(); }
    // The normalized form of `valid_utf8` (which stays valid UTF-8).
    std::string apply(std::string_view valid_utf8) const;

  private:
    std::vector<NormalizerStep> steps_;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
    enum class Kind {
        kSplit,        // pattern + behavior + invert
        kGpt2Regex,    // ByteLevel with use_regex: GPT-2's pattern, hand-written
        kLlama3Regex,  // a Split with Llama 3's / Qwen's pattern, hand-written (digit_limit)
        kPrefixSpace,  // ByteLevel with add_prefix_space: " " before a piece lacking one
        kMetaspace,    // replacement, prepend_scheme, split
        kDigits,       // individual_digits
    };
    enum class PrependScheme { kAlways, kFirst, kNever };

    Kind kind;
    TextPattern pattern{};
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    int digit_limit = 3;
    std::string replacement{};  // kMetaspace, one character
    PrependScheme prepend_scheme = PrependScheme::kAlways;
    bool split = true;               // kMetaspace
    bool individual_digits = false;  // kDigits
};

// Receives each final piece (non-empty, valid UTF-8) in order.
using PieceSink = std::function<void(std::string_view piece)>;

class PreTokenizer {
  public:
    explicit PreTokenizer(std::vector<PreTokenizerStep> steps = {}) : steps_(std::move(steps)) {}

    // Splits one stretch of (normalized) text; `at_origin` says it starts at offset 0 of the
    // encoded text (Metaspace's prepend_scheme "first" prepends only there).
    void run(std::string_view valid_utf8, bool at_origin, const PieceSink& sink) const;

  private:
    void run_from(std::size_t step, std::string_view text, bool at_origin,
                  const PieceSink& sink) const;

    std::vector<PreTokenizerStep> steps_;
};

}  // namespace llmserve::tokenizer
