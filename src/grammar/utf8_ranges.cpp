#include "grammar/utf8_ranges.h"

#include <algorithm>

namespace llmserve::grammar {
namespace {

constexpr std::uint32_t kSurrogateFirst = 0xD800, kSurrogateLast = 0xDFFF;

int utf8_length(std::uint32_t cp) {
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

std::array<std::uint8_t, 4> encode(std::uint32_t cp, int length) {
    std::array<std::uint8_t, 4> out{};
    if (length == 1) {
        out[0] = static_cast<std::uint8_t>(cp);
        return out;
    }
    static constexpr std::uint8_t kLead[] = {0, 0, 0xC0, 0xE0, 0xF0};
    for (int i = length - 1; i > 0; --i) {
        out[i] = static_cast<std::uint8_t>(0x80 | (cp & 0x3F));
        cp >>= 6;
    }
    out[0] = static_cast<std::uint8_t>(kLead[length] | cp);
    return out;
}

// Splits [first, last] (one encoded length) until every byte position ranges independently, as
// regex engines do when compiling classes to UTF-8 automata.
void split(std::uint32_t first, std::uint32_t last, int length,
           std::vector<ByteRangeSequence>& out) {
    for (int i = 1; i < length; ++i) {
        const std::uint32_t mask = (1u << (6 * i)) - 1;
        if ((first & ~mask) == (last & ~mask)) continue;
        if ((first & mask) != 0) {
            split(first, first | mask, length, out);
            split((first | mask) + 1, last, length, out);
            return;
        }
        if ((last & mask) != mask) {
            split(first, (last & ~mask) - 1, length, out);
            split(last & ~mask, last, length, out);
            return;
        }
    }
    const auto a = encode(first, length), b = encode(last, length);
    ByteRangeSequence sequence;
    for (int i = 0; i < length; ++i) sequence.emplace_back(a[i], b[i]);
    out.push_back(std::move(sequence));
}

}  // namespace

std::vector<CodePointRange> normalize(std::vector<CodePointRange> ranges, bool negate) {
    std::sort(ranges.begin(), ranges.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<CodePointRange> merged;
    for (const auto& r : ranges) {
        if (!merged.empty() && r.first <= merged.back().last + 1)
            merged.back().last = std::max(merged.back().last, r.last);
        else
            merged.push_back(r);
    }
    if (negate) {
        std::vector<CodePointRange> complement;
        std::uint32_t next = 0;
        for (const auto& r : merged) {
            if (r.first > next) complement.push_back({next, r.first - 1});
            next = r.last + 1;
        }
        if (next <= kMaxCodePoint) complement.push_back({next, kMaxCodePoint});
        merged = std::move(complement);
    }
    std::vector<CodePointRange> out;
    for (const auto& r : merged) {
        if (r.last < kSurrogateFirst || r.first > kSurrogateLast) {
            out.push_back(r);
            continue;
        }
        if (r.first < kSurrogateFirst) out.push_back({r.first, kSurrogateFirst - 1});
        if (r.last > kSurrogateLast) out.push_back({kSurrogateLast + 1, r.last});
    }
    return out;
}

std::vector<ByteRangeSequence> utf8_sequences(const std::vector<CodePointRange>& ranges) {
    static constexpr std::uint32_t kLengthEnds[] = {0x7F, 0x7FF, 0xFFFF, kMaxCodePoint};
    std::vector<ByteRangeSequence> out;
    for (const auto& r : ranges) {
        std::uint32_t first = r.first;
        for (int length = utf8_length(first); length <= 4 && first <= r.last; ++length) {
            const std::uint32_t last = std::min(r.last, kLengthEnds[length - 1]);
            split(first, last, length, out);
            first = last + 1;
        }
    }
    return out;
}

void append_utf8(std::uint32_t code_point, std::string& out) {
    const int length = utf8_length(code_point);
    const auto bytes = encode(code_point, length);
    out.append(reinterpret_cast<const char*>(bytes.data()), length);
}

}  // namespace llmserve::grammar
