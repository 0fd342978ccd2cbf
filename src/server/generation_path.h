// The one generation path every API shares: an ApiRequest's prompts are tokenized, fitted to the
// context and submitted; the engine's events are relayed to an ApiFormatter, which turns them
// into that API's response body or stream events.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <vector>

#include "server/api.h"
#include "server/errors.h"
#include "server/responses.h"
#include "server/schemas.h"
#include "server/serving_state.h"

namespace llmserve::server {

// One API's shapes, built from the shared path's events. Stream methods return the payloads of
// the server-sent events to write, in order. A formatter serves one request (it may keep state,
// such as where each choice's reasoning block ends).
class ApiFormatter {
  public:
    virtual ~ApiFormatter() = default;
    virtual ErrorStyle error_style() const { return ErrorStyle::kOpenAi; }

    // The whole answer of a request that did not stream.
    virtual nlohmann::json response(const ResponseContext& context,
                                    const std::vector<engine::RequestResult>& results) = 0;

    // Before the first generated text.
    virtual std::vector<nlohmann::json> stream_start(const ResponseContext&) { return {}; }
    // Newly final text of one choice (its tokens too); `offset`: bytes of generated text of this
    // choice before it.
    virtual std::vector<nlohmann::json> stream_delta(
        const ResponseContext& context, int choice, std::size_t prompt, const std::string& text,
        const std::vector<engine::GeneratedToken>& tokens, std::size_t offset) = 0;
    // A choice ended: `tail` is whatever of its text no delta carried (normally nothing).
    virtual std::vector<nlohmann::json> stream_finish(const ResponseContext& context, int choice,
                                                      const engine::SequenceResult& sequence,
                                                      const std::string& tail) = 0;
    // Every choice ended.
    virtual std::vector<nlohmann::json> stream_end(
        const ResponseContext& context, const std::vector<engine::RequestResult>& results) = 0;
};

// Runs `request` (its prompts final) on `model`'s engine: a JSON body, or (request.stream) a
// stream of server-sent events ending in "data: [DONE]". Throws what parsing, tokenizing or
// submitting refuses; an engine error ends the request (a non-streamed one throws it, a streamed
// one ends with an error event).
ApiResponse run_generation(ServingState& state, const LoadedModel& model, const ApiCall& call,
                           const ApiRequest& request, std::shared_ptr<ApiFormatter> formatter);

// A random hex id of `bytes` bytes ("cmpl-<hex>", request ids).
std::string random_hex(std::size_t bytes);

}  // namespace llmserve::server
