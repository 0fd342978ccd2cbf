// UTF-8 validation and lossy repair, shared by encode() (which accepts arbitrary bytes) and by
// decode()/StreamingDetokenizer (whose token bytes may split or break characters).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace llmserve::tokenizer {

enum class Utf8Status {
    kValid,      // a complete, well-formed character
    kInvalid,    // a maximal subpart that can never become well-formed
    kTruncated,  // a well-formed prefix cut off by the end of the input
};

struct Utf8Sequence {
    Utf8Status status;
    std::size_t length;  // bytes consumed: the character, or the maximal subpart (>= 1)
};

// Classifies the bytes starting at text[pos] (pos < text.size()) following Unicode's table of
// well-formed sequences (no overlongs, surrogates or code points above U+10FFFF).
Utf8Sequence next_utf8_sequence(std::string_view text, std::size_t pos);

bool is_valid_utf8(std::string_view text);

// Appends `bytes` to `out` with each maximal invalid subpart replaced by U+FFFD, exactly as Rust's
// String::from_utf8_lossy and Python's bytes.decode("utf-8", "replace") do.
void append_utf8_lossy(std::string_view bytes, std::string& out);

// Length (0..3) of the trailing bytes that form a well-formed but incomplete character: the bytes
// a streaming decoder must hold back because the next token may complete them.
std::size_t truncated_tail_length(std::string_view bytes);

// Decodes the well-formed character of `length` bytes at text[pos] (as classified kValid above).
char32_t decode_code_point(std::string_view text, std::size_t pos, std::size_t length);

}  // namespace llmserve::tokenizer
