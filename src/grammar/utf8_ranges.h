// Unicode code point sets as UTF-8 byte sequences, so that the matcher works on bytes only.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llmserve::grammar {

struct CodePointRange {
    std::uint32_t first = 0;
    std::uint32_t last = 0;  // inclusive
};

constexpr std::uint32_t kMaxCodePoint = 0x10FFFF;

// Sorted, merged ranges; with `negate`, the complement over all code points. Surrogates
// (U+D800..U+DFFF) are removed: they have no UTF-8 encoding.
std::vector<CodePointRange> normalize(std::vector<CodePointRange> ranges, bool negate);

// One UTF-8 sequence shape: byte i ranges over [ranges[i].first, ranges[i].second].
using ByteRangeSequence = std::vector<std::pair<std::uint8_t, std::uint8_t>>;

// Disjoint sequences whose union is exactly the UTF-8 encodings of `ranges` (normalized).
std::vector<ByteRangeSequence> utf8_sequences(const std::vector<CodePointRange>& ranges);

void append_utf8(std::uint32_t code_point, std::string& out);

}  // namespace llmserve::grammar
