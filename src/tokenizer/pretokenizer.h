// GPT-2's pre-tokenization: splits text into the pieces that BPE encodes independently, with the
// exact semantics of the regex (as used by OpenAI's encoder, tiktoken and HF's ByteLevel)
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// where \s is the Unicode White_Space property and \p{L} / \p{N} come from utf8proc's categories.
#pragma once

#include <cstddef>
#include <string_view>

namespace llmserve::tokenizer {

enum class CharClass : unsigned char { kLetter, kNumber, kSpace, kOther };

// The class of one Unicode scalar value as the regex sees it.
CharClass classify_code_point(char32_t c);

// Yields the pieces of `valid_utf8` (which must be well-formed UTF-8) left to right; the pieces
// are contiguous, non-empty and together cover the text.
class PieceScanner {
  public:
    explicit PieceScanner(std::string_view valid_utf8) : text_(valid_utf8) {}

    // The next piece, or an empty view once the text is exhausted.
    std::string_view next();

  private:
    struct ClassifiedChar {
        CharClass char_class;
        std::size_t length;  // bytes
    };

    ClassifiedChar char_at(std::size_t pos) const;
    std::size_t contraction_length() const;
    // End of the run of characters of `char_class` starting at `pos`.
    std::size_t run_end(std::size_t pos, CharClass char_class) const;

    std::string_view text_;
    std::size_t pos_ = 0;
};

}  // namespace llmserve::tokenizer
