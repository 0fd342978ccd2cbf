// GPT-2's reversible byte <-> printable character mapping (bytes_to_unicode in OpenAI's
// encoder.py): vocabulary files spell every token as a string of these 256 characters, e.g. "Ġthe"
// for " the".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace llmserve::tokenizer {

// The character that stands for `byte` in vocabulary files.
char32_t byte_to_vocab_char(std::uint8_t byte);

// The raw bytes a vocabulary spelling stands for; nullopt when `vocab_text` is not valid UTF-8 or
// uses a character outside the 256-character alphabet.
std::optional<std::string> vocab_text_to_bytes(std::string_view vocab_text);

// The vocabulary spelling (UTF-8) of raw bytes; inverse of vocab_text_to_bytes.
std::string bytes_to_vocab_text(std::string_view bytes);

}  // namespace llmserve::tokenizer
