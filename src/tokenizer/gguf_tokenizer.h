// A tokenizer from GGUF metadata (tokenizer.ggml.*), expressed as the tokenizer.json that
// Hugging Face would hold for it and loaded by the same code, so encodings follow the same rules:
// `gpt2` = byte-level BPE with tokenizer.ggml.merges and the pre-tokenizer regexes that
// tokenizer.ggml.pre names; `llama` = SentencePiece-style BPE (merges ranked by the scores of the
// pieces they make, byte fallback through the <0xNN> tokens).
#pragma once

#include <optional>
#include <string>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::tokenizer {

// kUnsupported naming the key and value for a tokenizer model or pre-tokenizer name this code does
// not know; kCorruptData / kNotFound naming the file and key for missing or inconsistent arrays.
Tokenizer tokenizer_from_gguf(const io::GgufFile& file);

// The tokenizer.json text tokenizer_from_gguf loads (for tests and inspection).
std::string gguf_tokenizer_json(const io::GgufFile& file);

// tokenizer.chat_template, when the file has one.
std::optional<std::string> gguf_chat_template(const io::GgufFile& file);

}  // namespace llmserve::tokenizer
