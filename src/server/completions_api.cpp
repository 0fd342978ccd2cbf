// POST /v1/completions: OpenAI's legacy completions API (text_completion objects).
#include <chrono>

#include "server/api_routes.h"
#include "server/generation_path.h"

namespace llmserve::server {
namespace {

using Json = nlohmann::json;

class CompletionsFormatter : public ApiFormatter {
  public:
    CompletionsFormatter()
        : identity_{"cmpl-" + random_hex(12),
                    std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count()} {}

    Json response(const ResponseContext& context,
                  const std::vector<engine::RequestResult>& results) override {
        return completion_response(context, identity_, results);
    }
    std::vector<Json> stream_start(const ResponseContext& rc) override {
        std::vector<Json> events;
        if (!rc.echo) return events;
        for (std::size_t p = 0; p < rc.prompts.size(); ++p) {
            for (int s = 0; s < rc.n; ++s) {
                events.push_back(completion_chunk(rc, identity_, rc.global_index(p, s),
                                                  rc.prompts[p].text, nullptr, std::nullopt,
                                                  rc.include_usage));
            }
        }
        return events;
    }
    std::vector<Json> stream_delta(const ResponseContext& rc, int choice, std::size_t prompt,
                                   const std::string& text,
                                   const std::vector<engine::GeneratedToken>& tokens,
                                   std::size_t offset) override {
        const bool with_logprobs = rc.logprobs.has_value() && !tokens.empty();
        if (text.empty() && !with_logprobs) return {};
        const std::size_t start = offset + (rc.echo ? rc.prompts[prompt].text.size() : 0);
        Json logprobs =
            with_logprobs ? openai_logprobs(*rc.tokenizer, tokens, start) : Json(nullptr);
        return {completion_chunk(rc, identity_, choice, text, std::move(logprobs), std::nullopt,
                                 rc.include_usage)};
    }
    std::vector<Json> stream_finish(const ResponseContext& rc, int choice,
                                    const engine::SequenceResult& sequence,
                                    const std::string& tail) override {
        return {completion_chunk(rc, identity_, choice, tail, nullptr,
                                 openai_finish_reason(sequence.finish_reason), rc.include_usage)};
    }
    std::vector<Json> stream_end(const ResponseContext& rc,
                                 const std::vector<engine::RequestResult>& results) override {
        if (!rc.include_usage) return {};
        return {completion_usage_chunk(rc, identity_, results)};
    }

  private:
    const CompletionIdentity identity_;
};

}  // namespace

ApiResponse completions_route(ServingState& state, const ApiCall& call) {
    const LoadedModel model = state.require_model();
    const ApiRequest request =
        parse_completion_request(call.body, state.request_limits(*model.engine));
    return run_generation(state, model, call, request, std::make_shared<CompletionsFormatter>());
}

}  // namespace llmserve::server
