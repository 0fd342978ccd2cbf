// tokenizer.json's decoder for vocabularies that are not byte-level (SentencePiece-style): a
// chain of Replace, Strip, Metaspace and ByteFallback steps applied token by token, then Fuse and
// the steps after it applied to the joined text. Written as a stream so that decoding a whole
// sequence and streaming it token by token are the same code: the streamed pieces concatenate
// to exactly decode(all ids).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::tokenizer {

struct DecoderStep {
    enum class Kind { kReplace, kStrip, kMetaspace, kByteFallback };
    Kind kind;
    std::string pattern;         // kReplace: the literal replaced; kMetaspace: the replacement
    std::string content;         // kReplace: what replaces it; kStrip: the character stripped
    std::size_t start = 0;       // kStrip: how many leading `content` characters to remove
    std::size_t stop = 0;        // kStrip: how many trailing ones
    bool drop_in_first = false;  // kMetaspace: prepend_scheme is not "never"
};

struct DecoderChain {
    std::vector<DecoderStep> per_token;  // before Fuse (or all of them when there is no Fuse)
    bool fused = false;
    // After Fuse, on the joined text: at most one Strip (Replace of one character would be the
    // same per token, so the loader moves it before Fuse).
    std::size_t fused_strip_start = 0;
    std::size_t fused_strip_stop = 0;
    std::string fused_strip_content;
};

// How `token` reads on its own in the middle of a text: the per-token steps applied (a <0xNN>
// token becomes its byte), for token_bytes().
std::string render_token(const DecoderChain& chain, std::string_view token);

// One sequence's decoding state. push() returns the text that is now final; finish() the rest.
class DecodeStream {
  public:
    explicit DecodeStream(const DecoderChain& chain);

    std::string push(std::string_view token);
    std::string finish();

  private:
    // Runs `token` through per-token step `index` onwards, appending final text to `out`.
    void feed(std::size_t index, std::string token, std::string& out);
    void flush_bytes(std::size_t index, std::string& out);
    void emit(std::string_view text, std::string& out);

    const DecoderChain* chain_;
    std::vector<std::uint64_t> tokens_seen_;  // per step (Metaspace's first-token rule)
    std::vector<std::string> pending_bytes_;  // per ByteFallback step: the open <0xNN> group
    std::size_t fused_stripped_ = 0;          // leading characters removed so far
    bool fused_started_ = false;              // a character other than the stripped one was seen
    std::string held_back_;  // trailing strip characters that the end of text may remove
};

}  // namespace llmserve::tokenizer
