// The routes of the APIs, each a function from an ApiCall to an ApiResponse (no socket): the
// adapters of /generate, /v1/completions and /v1/chat/completions parse their bodies into an
// ApiRequest and format the shared generation path's events; the model routes answer from the
// loaded model. They throw what they refuse (the HTTP layer maps it with the route's ErrorStyle).
#pragma once

#include <string>

#include "server/api.h"
#include "server/schemas.h"
#include "server/serving_state.h"

namespace llmserve::server {

ApiResponse generate_route(ServingState& state, const ApiCall& call);     // POST /generate
ApiResponse completions_route(ServingState& state, const ApiCall& call);  // /v1/completions
ApiResponse chat_route(ServingState& state, const ApiCall& call);         // /v1/chat/completions

ApiResponse tokenize_route(ServingState& state, const ApiCall& call);    // POST /tokenize
ApiResponse detokenize_route(ServingState& state, const ApiCall& call);  // POST /detokenize
ApiResponse models_route(ServingState& state, long long started_unix);   // GET /v1/models

// The chat prompt `inputs` render to with the model's template. Throws Error(kInvalidArgument)
// when the model has no template (saying how to give one) or the template raises.
std::string render_chat_prompt(const LoadedModel& model, const ChatInputs& inputs);

}  // namespace llmserve::server
