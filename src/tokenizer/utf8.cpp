#include "tokenizer/utf8.h"

#include <cstdint>

namespace llmserve::tokenizer {
namespace {

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";

struct LeadByteRule {
    std::size_t length;        // total bytes of the character, 0 for a byte that cannot lead
    std::uint8_t second_low;   // allowed range of the second byte (excludes overlongs,
    std::uint8_t second_high;  // surrogates and code points above U+10FFFF)
};

constexpr LeadByteRule lead_byte_rule(std::uint8_t lead) {
    if (lead < 0x80) return {1, 0, 0};
    if (lead >= 0xC2 && lead <= 0xDF) return {2, 0x80, 0xBF};
    if (lead == 0xE0) return {3, 0xA0, 0xBF};
    if (lead == 0xED) return {3, 0x80, 0x9F};
    if (lead >= 0xE1 && lead <= 0xEF) return {3, 0x80, 0xBF};
    if (lead == 0xF0) return {4, 0x90, 0xBF};
    if (lead >= 0xF1 && lead <= 0xF3) return {4, 0x80, 0xBF};
    if (lead == 0xF4) return {4, 0x80, 0x8F};
    return {0, 0, 0};
}

}  // namespace

Utf8Sequence next_utf8_sequence(std::string_view text, std::size_t pos) {
    const auto lead = static_cast<std::uint8_t>(text[pos]);
    const LeadByteRule rule = lead_byte_rule(lead);
    if (rule.length == 1) return {Utf8Status::kValid, 1};
    if (rule.length == 0) return {Utf8Status::kInvalid, 1};
    for (std::size_t i = 1; i < rule.length; ++i) {
        if (pos + i >= text.size()) return {Utf8Status::kTruncated, i};
        const auto byte = static_cast<std::uint8_t>(text[pos + i]);
        const std::uint8_t low = i == 1 ? rule.second_low : 0x80;
        const std::uint8_t high = i == 1 ? rule.second_high : 0xBF;
        if (byte < low || byte > high) return {Utf8Status::kInvalid, i};
    }
    return {Utf8Status::kValid, rule.length};
}

bool is_valid_utf8(std::string_view text) {
    std::size_t pos = 0;
    while (pos < text.size()) {
        if (static_cast<std::uint8_t>(text[pos]) < 0x80) {
            ++pos;
            continue;
        }
        const Utf8Sequence seq = next_utf8_sequence(text, pos);
        if (seq.status != Utf8Status::kValid) return false;
        pos += seq.length;
    }
    return true;
}

void append_utf8_lossy(std::string_view bytes, std::string& out) {
    std::size_t pos = 0;
    while (pos < bytes.size()) {
        const Utf8Sequence seq = next_utf8_sequence(bytes, pos);
        if (seq.status == Utf8Status::kValid) {
            out.append(bytes.substr(pos, seq.length));
        } else {
            out.append(kReplacementCharacter);
        }
        pos += seq.length;
    }
}

std::size_t truncated_tail_length(std::string_view bytes) {
    // A truncated character is at most 3 bytes long, so only its lead can start the tail.
    const std::size_t max_tail = bytes.size() < 3 ? bytes.size() : 3;
    for (std::size_t tail = 1; tail <= max_tail; ++tail) {
        const std::size_t start = bytes.size() - tail;
        const auto byte = static_cast<std::uint8_t>(bytes[start]);
        if ((byte & 0xC0) == 0x80) continue;  // a continuation byte: look further back
        const Utf8Sequence seq = next_utf8_sequence(bytes, start);
        return seq.status == Utf8Status::kTruncated && seq.length == tail ? tail : 0;
    }
    return 0;
}

char32_t decode_code_point(std::string_view text, std::size_t pos, std::size_t length) {
    const auto byte = [&](std::size_t i) {
        return static_cast<char32_t>(static_cast<std::uint8_t>(text[pos + i]));
    };
    switch (length) {
        case 1:
            return byte(0);
        case 2:
            return ((byte(0) & 0x1F) << 6) | (byte(1) & 0x3F);
        case 3:
            return ((byte(0) & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F);
        default:
            return ((byte(0) & 0x07) << 18) | ((byte(1) & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) |
                   (byte(3) & 0x3F);
    }
}

}  // namespace llmserve::tokenizer
