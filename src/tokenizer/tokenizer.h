// GPT-2 byte-level BPE tokenizer: loads Hugging Face tokenizer.json or vocab.json + merges.txt and
// reproduces transformers' / tiktoken's encodings and decodings exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::tokenizer {

using TokenId = std::int32_t;

struct TokenizerState;

// Immutable once loaded; copies share the vocabulary and the piece cache, and every method may be
// called from several threads at once.
class Tokenizer {
  public:
    // Loads <dir>/tokenizer.json if present, else <dir>/vocab.json + <dir>/merges.txt.
    // Throws Error kNotFound (missing directory or files), kCorruptData (malformed content) or
    // kUnsupported (a tokenizer.json configured other than GPT-2's byte-level BPE), naming the
    // file and what is wrong.
    static Tokenizer from_directory(const std::filesystem::path& dir);
    // Hugging Face `tokenizers` format: model.vocab, model.merges ("a b" strings or [a, b] pairs)
    // and added_tokens (split out of the text by encode(); those marked special are is_special()).
    static Tokenizer from_tokenizer_json(const std::filesystem::path& file);
    // OpenAI / GPT2Tokenizer files. As GPT2Tokenizer does, "<|endoftext|>" (if in the vocabulary)
    // is the one special token.
    static Tokenizer from_vocab_and_merges(const std::filesystem::path& vocab,
                                           const std::filesystem::path& merges);
    // tokenizer.json content held in memory; `source` names it in error messages.
    static Tokenizer from_tokenizer_json_text(std::string_view json, std::string_view source);

    // Token ids of `utf8`, with every literal added token (e.g. "<|endoftext|>") becoming its id,
    // leftmost-longest first, as transformers does. Bytes that are not valid UTF-8 (which
    // transformers cannot receive: it takes str) are first replaced by U+FFFD per maximal invalid
    // subpart, as Python's bytes.decode("utf-8", "replace") would, so encode never fails.
    std::vector<TokenId> encode(std::string_view utf8) const;
    // As encode(), but added tokens are ordinary text (tiktoken's encode_ordinary).
    std::vector<TokenId> encode_ordinary(std::string_view utf8) const;

    // The concatenated bytes of `ids` with each maximal invalid UTF-8 subpart replaced by U+FFFD
    // (Rust's from_utf8_lossy, as transformers does); no clean-up of spaces. Throws
    // kInvalidArgument naming any id that is not a token.
    std::string decode(std::span<const TokenId> ids) const;

    // The raw bytes `id` stands for (byte-level mapping undone); an added token gives its literal
    // text. Throws kInvalidArgument naming an id that is not a token.
    std::string_view token_bytes(TokenId id) const;
    // One more than the largest token id (GPT-2: 50257), added tokens included.
    std::size_t vocab_size() const;
    // The id of a token spelled as in the vocabulary files (e.g. "Ġthe", "<|endoftext|>").
    std::optional<TokenId> token_id(std::string_view token_text) const;
    // True for added tokens marked special; false for every other id, including invalid ones.
    bool is_special(TokenId id) const;

  private:
    explicit Tokenizer(std::shared_ptr<const TokenizerState> state) : state_(std::move(state)) {}

    // Appends the tokens of `valid_utf8` without looking for added tokens.
    void encode_plain(std::string_view valid_utf8, std::vector<TokenId>& out) const;

    std::shared_ptr<const TokenizerState> state_;
};

// Streaming detokenizer for one sequence: push() returns the newly final text (possibly empty),
// never a partial UTF-8 character; finish() returns what remains (an incomplete trailing character
// becomes U+FFFD exactly as decode() renders it). The concatenation of everything returned equals
// tokenizer.decode(all ids pushed). Holds a (cheap, shared) copy of the tokenizer.
class StreamingDetokenizer {
  public:
    explicit StreamingDetokenizer(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

    // Throws kInvalidArgument (as decode() does) for an id that is not a token; the state is then
    // unchanged.
    std::string push(TokenId id);
    // Flushes the held-back bytes; the detokenizer is then empty and may start a new sequence.
    std::string finish();

  private:
    Tokenizer tokenizer_;
    std::string pending_;  // bytes of an incomplete trailing character (at most 3)
};

}  // namespace llmserve::tokenizer
