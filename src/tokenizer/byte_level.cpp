#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace llmserve::tokenizer {
namespace {

// Printable Latin-1 bytes stand for themselves; the other 68 (controls, space, NBSP, soft hyphen)
// are moved, in byte order, to U+0100 onwards so that every token is visible text.
constexpr bool stands_for_itself(unsigned byte) {
    return (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
}

constexpr std::array<char32_t, 256> make_byte_to_char() {
    std::array<char32_t, 256> table{};
    char32_t next_moved = 0x100;
    for (unsigned byte = 0; byte < 256; ++byte) {
        table[byte] = stands_for_itself(byte) ? char32_t(byte) : next_moved++;
    }
    return table;
}

constexpr std::array<char32_t, 256> kByteToChar = make_byte_to_char();

// Every mapped character is below U+0144, so the inverse is a small dense table (-1 = unmapped).
constexpr std::size_t kCharLimit = 0x144;

constexpr std::array<std::int16_t, kCharLimit> make_char_to_byte() {
    std::array<std::int16_t, kCharLimit> table{};
    for (auto& entry : table) entry = -1;
    for (unsigned byte = 0; byte < 256; ++byte) {
        table[kByteToChar[byte]] = static_cast<std::int16_t>(byte);
    }
    return table;
}

constexpr std::array<std::int16_t, kCharLimit> kCharToByte = make_char_to_byte();

void append_code_point(char32_t c, std::string& out) {
    if (c < 0x80) {
        out.push_back(static_cast<char>(c));
    } else {  // every mapped character is below U+0800
        out.push_back(static_cast<char>(0xC0 | (c >> 6)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
}

}  // namespace

char32_t byte_to_vocab_char(std::uint8_t byte) {
    return kByteToChar[byte];
}

std::optional<std::string> vocab_text_to_bytes(std::string_view vocab_text) {
    std::string bytes;
    bytes.reserve(vocab_text.size());
    std::size_t pos = 0;
    while (pos < vocab_text.size()) {
        const Utf8Sequence seq = next_utf8_sequence(vocab_text, pos);
        if (seq.status != Utf8Status::kValid) return std::nullopt;
        const char32_t c = decode_code_point(vocab_text, pos, seq.length);
        if (c >= kCharLimit || kCharToByte[c] < 0) return std::nullopt;
        bytes.push_back(static_cast<char>(kCharToByte[c]));
        pos += seq.length;
    }
    return bytes;
}

std::string bytes_to_vocab_text(std::string_view bytes) {
    std::string text;
    text.reserve(bytes.size() * 2);
    for (const char byte : bytes) {
        append_code_point(kByteToChar[static_cast<std::uint8_t>(byte)], text);
    }
    return text;
}

}  // namespace llmserve::tokenizer
