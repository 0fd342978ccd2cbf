// The server side of one generation request: prompts tokenized and fitted to the model's
// context, one engine request per prompt, and a loop that relays the engine's events while
// watching the client, cancelling everything when it goes away.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "server/schemas.h"

namespace llmserve::tokenizer {
class Tokenizer;
}

namespace llmserve::server {

// A prompt as token ids plus its text (echo needs the text of token-id prompts too).
struct TokenizedPrompt {
    std::vector<engine::TokenId> ids;
    std::string text;
};

// Text prompts are encoded; token-id prompts decoded. An empty text prompt becomes the model's
// BOS token (as transformers' generate() starts from it); without one it is a 422 on "prompt".
std::vector<TokenizedPrompt> tokenize_prompts(const std::vector<Prompt>& prompts,
                                              const tokenizer::Tokenizer& tokenizer,
                                              std::optional<engine::TokenId> bos_token);

// The max_new_tokens to use for a prompt of `prompt_tokens` in a context of `n_positions`: the
// requested value, or when the request gave none the default clamped to the room left.
// Throws ContextLengthExceeded (HTTP 422) naming the field and both numbers when the prompt
// leaves no room, or the requested new tokens do not fit.
int fit_to_context(int prompt_tokens, const GenerationOptions& options, int n_positions);

// One engine request per prompt, with the options (max_new_tokens fitted per prompt) and the
// deadline after which the engine ends generation with finish reason "timeout".
std::vector<engine::GenerationRequest> make_engine_requests(
    const std::vector<TokenizedPrompt>& prompts, const GenerationOptions& options, int n_positions,
    std::chrono::steady_clock::time_point deadline);

// An upper estimate of the bytes a non-streamed response to `requests` takes (every sample
// reaching its max_new_tokens, each token and logprobs alternative at a generous size, an
// echoed prompt's tokens included), to refuse before generation what would exceed
// MAX_RESPONSE_BYTES.
std::size_t worst_case_response_bytes(const std::vector<engine::GenerationRequest>& requests,
                                      bool echo);

class GenerationJob {
  public:
    // Submits every request. If one is refused (validation, queue full), those already
    // submitted are cancelled and the error propagates.
    GenerationJob(engine::Engine& engine, std::vector<engine::GenerationRequest> requests);
    ~GenerationJob();  // cancels whatever has not finished (the handler failed or was abandoned)
    GenerationJob(const GenerationJob&) = delete;
    GenerationJob& operator=(const GenerationJob&) = delete;

    struct Callbacks {
        // Each event in order; returning false means the client can no longer be written to.
        std::function<bool(std::size_t prompt, const engine::StreamEvent& event)> on_event;
        // Once per prompt when its result is complete (after all of its events).
        std::function<bool(std::size_t prompt, const engine::RequestResult& result)> on_result;
        // Polled between engine steps; true cancels the job.
        std::function<bool()> client_gone;
    };

    // Relays events until every prompt has its result; returns the results by prompt. When the
    // client goes away (or a callback returns false) the engine requests are cancelled (they
    // stop within one decode step) and the loop only waits for their final results.
    std::vector<engine::RequestResult> run(const Callbacks& callbacks);

    // Ends the job early (finish reason "cancelled"); thread-safe.
    void cancel();
    bool client_disconnected() const { return client_disconnected_; }

  private:
    std::vector<std::shared_ptr<engine::RequestHandle>> handles_;
    std::atomic<bool> client_disconnected_{false};
};

}  // namespace llmserve::server
