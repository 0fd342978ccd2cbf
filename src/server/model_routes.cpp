// The routes that answer from the loaded model without generating: /tokenize (a prompt, or chat
// messages rendered by the template), /detokenize and /v1/models.
#include "model/model.h"
#include "server/api_routes.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::server {
namespace {

using Json = nlohmann::json;

ApiResponse json_response(const Json& body) {
    ApiResponse response;
    response.body = body.dump(-1, ' ', false, Json::error_handler_t::replace);
    return response;
}

}  // namespace

ApiResponse tokenize_route(ServingState& state, const ApiCall& call) {
    const LoadedModel model = state.require_model();
    const engine::Engine& e = *model.engine;
    const TokenizeRequest request = parse_tokenize_request(call.body, state.request_limits(e));
    Json body;
    std::vector<engine::TokenId> ids;
    if (request.chat) {
        // As the chat route tokenizes it: special tokens recognised, nothing added.
        const std::string prompt = render_chat_prompt(model, *request.chat);
        ids = e.tokenizer().encode(prompt, false);
        body["prompt"] = prompt;
    } else {
        ids = e.tokenizer().encode(request.prompt);
    }
    body["tokens"] = ids;
    body["count"] = ids.size();
    body["max_model_len"] = e.model().config().n_positions;
    return json_response(body);
}

ApiResponse detokenize_route(ServingState& state, const ApiCall& call) {
    const LoadedModel model = state.require_model();
    const DetokenizeRequest request =
        parse_detokenize_request(call.body, state.request_limits(*model.engine));
    return json_response({{"prompt", model.engine->tokenizer().decode(request.tokens)}});
}

ApiResponse models_route(ServingState& state, long long started_unix) {
    const LoadedModel model = state.require_model();
    const Json entry = {{"id", model.engine->model().name()},
                        {"object", "model"},
                        {"created", started_unix},
                        {"owned_by", "llmserve"},
                        {"max_model_len", model.engine->model().config().n_positions}};
    return json_response({{"object", "list"}, {"data", Json::array({entry})}});
}

}  // namespace llmserve::server
