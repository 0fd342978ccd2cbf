// Response bodies and server-sent-event payloads of /generate and /v1/completions, built from
// engine results. OpenAI shapes follow the legacy completions API exactly (text_completion
// objects, choices[], usage, logprobs with tokens/token_logprobs/top_logprobs/text_offset).
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "engine/request.h"
#include "server/generation.h"

namespace llmserve::tokenizer {
class Tokenizer;
}

namespace llmserve::server {

// What the builders need besides the results.
struct ResponseContext {
    std::string model_name;
    const tokenizer::Tokenizer* tokenizer = nullptr;
    std::vector<TokenizedPrompt> prompts;
    int n = 1;                    // samples per prompt
    std::optional<int> logprobs;  // top alternatives asked for
    bool prompt_logprobs = false;
    bool echo = false;           // OpenAI: choices start with the prompt
    bool include_usage = false;  // OpenAI streams: a usage chunk at the end, "usage": null before

    // Results and choices are numbered prompt-major: prompt p, sample s -> p * n + s.
    int global_index(std::size_t prompt, int sample) const {
        return static_cast<int>(prompt) * n + sample;
    }
};

// {"prompt_tokens", "completion_tokens", "total_tokens"} over every prompt and sample.
nlohmann::json usage_json(const std::vector<engine::RequestResult>& results);

// "data: <compact json>\n\n"; and the stream terminator "data: [DONE]\n\n".
std::string sse_event(const nlohmann::json& payload);
std::string sse_done();

// POST /generate -----------------------------------------------------------------------------
// {"model", "results": [...], "usage", "timing"}.
nlohmann::json generate_response(const ResponseContext& context,
                                 const std::vector<engine::RequestResult>& results);
// One streamed piece: {"index", "text"}.
nlohmann::json generate_stream_piece(int index, const std::string& text);
// The closing event: {"done": true, "results", "usage", "timing"}.
nlohmann::json generate_stream_done(const ResponseContext& context,
                                    const std::vector<engine::RequestResult>& results);

// POST /v1/completions ------------------------------------------------------------------------
struct CompletionIdentity {
    std::string id;         // "cmpl-<hex>"
    long long created = 0;  // Unix seconds
};

// OpenAI's finish_reason, only ever "stop" (a stop string, stop token or EOS) or "length" (the
// token limit, and also a timeout or a cancellation: the answer was cut short). The precise
// reason stays in /generate and the logs.
std::string openai_finish_reason(engine::FinishReason reason);

nlohmann::json completion_response(const ResponseContext& context,
                                   const CompletionIdentity& identity,
                                   const std::vector<engine::RequestResult>& results);

// One stream chunk for one choice. `logprobs` is the chunk's logprobs object or null;
// `finish_reason` null until the choice ends. With include_usage every chunk has "usage": null.
nlohmann::json completion_chunk(const ResponseContext& context, const CompletionIdentity& identity,
                                int choice_index, const std::string& text, nlohmann::json logprobs,
                                std::optional<std::string> finish_reason, bool include_usage);
// The final usage chunk: "choices": [] and the request's usage.
nlohmann::json completion_usage_chunk(const ResponseContext& context,
                                      const CompletionIdentity& identity,
                                      const std::vector<engine::RequestResult>& results);

// OpenAI logprobs object for generated tokens, with text offsets counted from `offset_start`
// (bytes of text that precede them in the choice).
nlohmann::json openai_logprobs(const tokenizer::Tokenizer& tokenizer,
                               const std::vector<engine::GeneratedToken>& tokens,
                               std::size_t offset_start);
// The same for an echoed prompt: its tokens with their logprobs (the first is null), prepended
// to `generated` (which must come from openai_logprobs).
nlohmann::json prepend_prompt_logprobs(const tokenizer::Tokenizer& tokenizer,
                                       const TokenizedPrompt& prompt,
                                       const std::vector<std::optional<float>>& prompt_logprobs,
                                       nlohmann::json generated);

}  // namespace llmserve::server
