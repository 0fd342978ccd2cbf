// BPE tokenizers as Hugging Face tokenizer.json describes them: byte-level (GPT-2, Llama 3, Qwen)
// and SentencePiece-style (Llama 2, Mistral, TinyLlama, Gemma), with their normalizers,
// pre-tokenizers, added tokens, post-processors and decoders; also GPT-2's vocab.json +
// merges.txt. Encodings and decodings are exactly those of HF tokenizers / transformers; a file
// configured with anything this code cannot reproduce exactly is refused at load.
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

#include "tokenizer/decoder.h"

namespace llmserve::tokenizer {

using TokenId = std::int32_t;

struct TokenizerState;

// Immutable once loaded; copies share the vocabulary and the piece cache, and every method may be
// called from several threads at once.
class Tokenizer {
  public:
    // Loads <dir>/tokenizer.json (with <dir>/tokenizer_config.json when present) if there is
    // one, else <dir>/vocab.json + <dir>/merges.txt; `dir` may also be a GGUF file, whose
    // tokenizer metadata is read (gguf_tokenizer.h). Throws Error kNotFound (missing directory
    // or files), kCorruptData (malformed content) or kUnsupported (a component this code does
    // not reproduce exactly: WordPiece, Unigram, an unknown normalizer, pre-tokenizer, decoder
    // or post-processor type or option), naming the file and the component.
    static Tokenizer from_directory(const std::filesystem::path& dir);
    // Hugging Face `tokenizers` format: model (BPE: vocab, merges as "a b" strings or [a, b]
    // pairs, byte_fallback, unk_token, fuse_unk, ignore_merges), normalizer, pre_tokenizer,
    // added_tokens (split out of the text by encode(); those marked special are is_special()),
    // post_processor and decoder. `config` (tokenizer_config.json) supplies bos_token /
    // eos_token and, for the Llama and Gemma tokenizer classes, add_bos_token / add_eos_token.
    static Tokenizer from_tokenizer_json(const std::filesystem::path& file,
                                         const std::optional<std::filesystem::path>& config = {});
    // OpenAI / GPT2Tokenizer files. As GPT2Tokenizer does, "<|endoftext|>" (if in the vocabulary)
    // is the one special token.
    static Tokenizer from_vocab_and_merges(const std::filesystem::path& vocab,
                                           const std::filesystem::path& merges);
    // tokenizer.json (and optionally tokenizer_config.json) content held in memory; `source`
    // names it in error messages.
    static Tokenizer from_tokenizer_json_text(std::string_view json, std::string_view source,
                                              std::string_view config_json = {});

    // Token ids of `utf8`, with every literal added token (e.g. "<|endoftext|>", "<s>")
    // becoming its id, leftmost-longest first, as transformers does; add_special_tokens adds
    // what the post-processor adds (e.g. Llama 2's <s> in front), as transformers' default does.
    // Bytes that are not valid UTF-8 (which transformers cannot receive: it takes str) are first
    // replaced by U+FFFD per maximal invalid subpart, as Python's bytes.decode("utf-8",
    // "replace") would, so encode never fails.
    std::vector<TokenId> encode(std::string_view utf8, bool add_special_tokens = true) const;
    // As encode() without the post-processor's tokens, and added tokens are ordinary text
    // (tiktoken's encode_ordinary).
    std::vector<TokenId> encode_ordinary(std::string_view utf8) const;

    // The text of `ids` as the tokenizer's decoder gives it, special tokens included, no clean-up
    // of spaces: byte-level vocabularies concatenate the tokens' bytes and replace each maximal
    // invalid UTF-8 subpart by U+FFFD (Rust's from_utf8_lossy, as transformers does). Throws
    // kInvalidArgument naming any id that is not a token.
    std::string decode(std::span<const TokenId> ids) const;

    // The raw bytes `id` stands for (byte-level mapping undone; a SentencePiece-style token with
    // its decoder's replacements applied, e.g. "▁the" -> " the", "<0x0A>" -> "\n"); an added
    // token gives its literal text. Throws kInvalidArgument naming an id that is not a token.
    std::string_view token_bytes(TokenId id) const;
    // One more than the largest token id (GPT-2: 50257), added tokens included.
    std::size_t vocab_size() const;
    // The id of a token spelled as in the vocabulary files (e.g. "Ġthe", "▁the", "<|endoftext|>").
    std::optional<TokenId> token_id(std::string_view token_text) const;
    // True for added tokens marked special; false for every other id, including invalid ones.
    bool is_special(TokenId id) const;
    // tokenizer_config.json's bos_token / eos_token (absent without that file, or when it names
    // none); GPT-2's vocab.json + merges.txt have "<|endoftext|>" as both.
    std::optional<TokenId> bos_token_id() const;
    std::optional<TokenId> eos_token_id() const;

  private:
    explicit Tokenizer(std::shared_ptr<const TokenizerState> state) : state_(std::move(state)) {}
    friend class StreamingDetokenizer;

    // Appends the tokens of one stretch of text between added tokens: normalized, split by the
    // normalized added tokens, pre-tokenized and merged. `at_origin`: it starts the text.
    void encode_stretch(std::string_view valid_utf8, bool at_origin,
                        std::vector<TokenId>& out) const;
    void encode_normalized(std::string_view valid_utf8, bool at_origin,
                           std::vector<TokenId>& out) const;

    std::shared_ptr<const TokenizerState> state_;
};

// Streaming detokenizer for one sequence: push() returns the newly final text (possibly empty),
// never a partial UTF-8 character; finish() returns what remains (an incomplete trailing character
// becomes U+FFFD exactly as decode() renders it). The concatenation of everything returned equals
// tokenizer.decode(all ids pushed), across byte-fallback groups and Metaspace's or Strip's
// leading-space removal too. Holds a (cheap, shared) copy of the tokenizer.
class StreamingDetokenizer {
  public:
    explicit StreamingDetokenizer(const Tokenizer& tokenizer);

    // Throws kInvalidArgument (as decode() does) for an id that is not a token; the state is then
    // unchanged.
    std::string push(TokenId id);
    // Flushes the held-back bytes; the detokenizer is then empty and may start a new sequence.
    std::string finish();

  private:
    Tokenizer tokenizer_;
    std::string pending_;  // byte-level: bytes of an incomplete trailing character (at most 3)
    std::optional<DecodeStream> stream_;  // other vocabularies: the decoder's state
};

}  // namespace llmserve::tokenizer
