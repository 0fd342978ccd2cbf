// POST /generate: this server's own API (transformers' generate() names; precise finish reasons).
#include "server/api_routes.h"
#include "server/generation_path.h"

namespace llmserve::server {
namespace {

using Json = nlohmann::json;

class GenerateFormatter : public ApiFormatter {
  public:
    ErrorStyle error_style() const override { return ErrorStyle::kNative; }
    Json response(const ResponseContext& context,
                  const std::vector<engine::RequestResult>& results) override {
        return generate_response(context, results);
    }
    std::vector<Json> stream_delta(const ResponseContext&, int choice, std::size_t,
                                   const std::string& text,
                                   const std::vector<engine::GeneratedToken>&,
                                   std::size_t) override {
        if (text.empty()) return {};
        return {generate_stream_piece(choice, text)};
    }
    std::vector<Json> stream_finish(const ResponseContext&, int choice,
                                    const engine::SequenceResult&,
                                    const std::string& tail) override {
        if (tail.empty()) return {};
        return {generate_stream_piece(choice, tail)};
    }
    std::vector<Json> stream_end(const ResponseContext& context,
                                 const std::vector<engine::RequestResult>& results) override {
        return {generate_stream_done(context, results)};
    }
};

}  // namespace

ApiResponse generate_route(ServingState& state, const ApiCall& call) {
    const LoadedModel model = state.require_model();
    const ApiRequest request =
        parse_generate_request(call.body, state.request_limits(*model.engine));
    return run_generation(state, model, call, request, std::make_shared<GenerateFormatter>());
}

}  // namespace llmserve::server
