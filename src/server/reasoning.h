// REASONING_PARSER=think: a reply that opens with a <think>...</think> block (Qwen3, DeepSeek-R1
// distills) has that block split off as reasoning_content, as vLLM does. Only a block at the very
// start counts; without the closing tag everything after <think> is reasoning (cut short).
#pragma once

#include <string>
#include <string_view>

namespace llmserve::server {

struct ReasoningSplit {
    std::string reasoning;  // the block's text, tags removed
    std::string content;    // the rest, leading newlines removed
    bool has_reasoning = false;
};

ReasoningSplit split_reasoning(std::string_view text);

// The same split over a stream of text pieces: feed() returns the pieces of reasoning and
// content that are final (text that may still become a tag is held back); finish() flushes.
class ReasoningStream {
  public:
    ReasoningSplit feed(std::string_view piece);
    ReasoningSplit finish();

  private:
    enum class Phase { kOpening, kReasoning, kContentStart, kContent };
    ReasoningSplit drain(bool final);

    Phase phase_ = Phase::kOpening;
    std::string pending_;
};

}  // namespace llmserve::server
