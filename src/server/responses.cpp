#include "server/responses.h"

#include <algorithm>

#include "tokenizer/tokenizer.h"

namespace llmserve::server {
namespace {

using Json = nlohmann::json;

std::string token_text(const tokenizer::Tokenizer& tokenizer, engine::TokenId token) {
    return std::string(tokenizer.token_bytes(token));
}

Json logprob_value(std::optional<float> logprob) {
    return logprob ? Json(*logprob) : Json(nullptr);
}

// /generate's per-token logprobs: [{"token", "text", "logprob", "top_logprobs": [...]}].
Json generate_token_logprobs(const tokenizer::Tokenizer& tokenizer,
                             const std::vector<engine::GeneratedToken>& tokens) {
    Json out = Json::array();
    for (const engine::GeneratedToken& token : tokens) {
        Json top = Json::array();
        for (const engine::TokenLogprob& alternative : token.top) {
            top.push_back({{"token", alternative.token},
                           {"text", token_text(tokenizer, alternative.token)},
                           {"logprob", alternative.logprob}});
        }
        out.push_back({{"token", token.token},
                       {"text", token_text(tokenizer, token.token)},
                       {"logprob", token.logprob},
                       {"top_logprobs", std::move(top)}});
    }
    return out;
}

Json generate_results(const ResponseContext& context,
                      const std::vector<engine::RequestResult>& results) {
    Json out = Json::array();
    for (std::size_t p = 0; p < results.size(); ++p) {
        for (const engine::SequenceResult& sequence : results[p].sequences) {
            Json entry = {{"index", context.global_index(p, sequence.index)},
                          {"prompt_index", p},
                          {"text", sequence.text},
                          {"finish_reason", engine::to_string(sequence.finish_reason)},
                          {"generated_tokens", sequence.tokens.size()},
                          {"seed", results[p].seed}};
            if (!sequence.matched_stop.empty()) entry["stop"] = sequence.matched_stop;
            if (context.logprobs) {
                entry["logprobs"] = generate_token_logprobs(*context.tokenizer, sequence.tokens);
            }
            if (context.prompt_logprobs) {
                Json prompt = Json::array();
                for (const auto& logprob : results[p].prompt_logprobs) {
                    prompt.push_back(logprob_value(logprob));
                }
                entry["prompt_logprobs"] = std::move(prompt);
            }
            out.push_back(std::move(entry));
        }
    }
    return out;
}

Json timing_json(const std::vector<engine::RequestResult>& results) {
    double queue_ms = 0, prefill_ms = 0, decode_ms = 0, busy_ms = 0;
    int completion_tokens = 0;
    for (const engine::RequestResult& result : results) {
        queue_ms = std::max(queue_ms, result.timing.queue_ms);
        prefill_ms = std::max(prefill_ms, result.timing.prefill_ms);
        decode_ms = std::max(decode_ms, result.timing.decode_ms);
        busy_ms = std::max(busy_ms, result.timing.prefill_ms + result.timing.decode_ms);
        completion_tokens += result.completion_tokens;
    }
    const double tokens_per_second = busy_ms > 0 ? completion_tokens / (busy_ms / 1000.0) : 0.0;
    return {{"queue_ms", queue_ms},
            {"prefill_ms", prefill_ms},
            {"decode_ms", decode_ms},
            {"tokens_per_second", tokens_per_second}};
}

Json completion_base(const ResponseContext& context, const CompletionIdentity& identity) {
    return {{"id", identity.id},
            {"object", "text_completion"},
            {"created", identity.created},
            {"model", context.model_name}};
}

}  // namespace

Json usage_json(const std::vector<engine::RequestResult>& results) {
    long long prompt_tokens = 0, completion_tokens = 0;
    for (const engine::RequestResult& result : results) {
        prompt_tokens += result.prompt_tokens;
        completion_tokens += result.completion_tokens;
    }
    return {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}};
}

std::string sse_event(const Json& payload) {
    return "data: " + payload.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n";
}

std::string sse_done() {
    return "data: [DONE]\n\n";
}

Json generate_response(const ResponseContext& context,
                       const std::vector<engine::RequestResult>& results) {
    return {{"model", context.model_name},
            {"results", generate_results(context, results)},
            {"usage", usage_json(results)},
            {"timing", timing_json(results)}};
}

Json generate_stream_piece(int index, const std::string& text) {
    return {{"index", index}, {"text", text}};
}

Json generate_stream_done(const ResponseContext& context,
                          const std::vector<engine::RequestResult>& results) {
    return {{"done", true},
            {"model", context.model_name},
            {"results", generate_results(context, results)},
            {"usage", usage_json(results)},
            {"timing", timing_json(results)}};
}

std::string openai_finish_reason(engine::FinishReason reason) {
    switch (reason) {
        case engine::FinishReason::kEos:
        case engine::FinishReason::kStop:
            return "stop";
        case engine::FinishReason::kLength:
        case engine::FinishReason::kTimeout:
        case engine::FinishReason::kCancelled:
        case engine::FinishReason::kError:  // (an error ends the request before any choice)
            return "length";
    }
    return "stop";
}

Json openai_logprobs(const tokenizer::Tokenizer& tokenizer,
                     const std::vector<engine::GeneratedToken>& tokens, std::size_t offset_start) {
    Json texts = Json::array(), logprobs = Json::array(), top = Json::array(),
         offsets = Json::array();
    std::size_t offset = offset_start;
    for (const engine::GeneratedToken& token : tokens) {
        const std::string text = token_text(tokenizer, token.token);
        texts.push_back(text);
        logprobs.push_back(token.logprob);
        Json alternatives = Json::object();
        for (const engine::TokenLogprob& alternative : token.top) {
            alternatives[token_text(tokenizer, alternative.token)] = alternative.logprob;
        }
        top.push_back(std::move(alternatives));
        offsets.push_back(offset);
        offset += text.size();
    }
    return {{"tokens", std::move(texts)},
            {"token_logprobs", std::move(logprobs)},
            {"top_logprobs", std::move(top)},
            {"text_offset", std::move(offsets)}};
}

Json prepend_prompt_logprobs(const tokenizer::Tokenizer& tokenizer, const TokenizedPrompt& prompt,
                             const std::vector<std::optional<float>>& prompt_logprobs,
                             Json generated) {
    Json texts = Json::array(), logprobs = Json::array(), top = Json::array(),
         offsets = Json::array();
    std::size_t offset = 0;
    for (std::size_t i = 0; i < prompt.ids.size(); ++i) {
        const std::string text = token_text(tokenizer, prompt.ids[i]);
        texts.push_back(text);
        logprobs.push_back(i < prompt_logprobs.size() ? logprob_value(prompt_logprobs[i])
                                                      : Json(nullptr));
        top.push_back(nullptr);  // the engine scores prompt tokens without alternatives
        offsets.push_back(offset);
        offset += text.size();
    }
    const auto append = [](Json& target, Json& source) {
        for (Json& item : source) target.push_back(std::move(item));
    };
    append(texts, generated["tokens"]);
    append(logprobs, generated["token_logprobs"]);
    append(top, generated["top_logprobs"]);
    append(offsets, generated["text_offset"]);
    return {{"tokens", std::move(texts)},
            {"token_logprobs", std::move(logprobs)},
            {"top_logprobs", std::move(top)},
            {"text_offset", std::move(offsets)}};
}

Json completion_response(const ResponseContext& context, const CompletionIdentity& identity,
                         const std::vector<engine::RequestResult>& results) {
    Json choices = Json::array();
    for (std::size_t p = 0; p < results.size(); ++p) {
        const TokenizedPrompt& prompt = context.prompts[p];
        for (const engine::SequenceResult& sequence : results[p].sequences) {
            const std::string prefix = context.echo ? prompt.text : std::string();
            Json logprobs = nullptr;
            if (context.logprobs) {
                logprobs = openai_logprobs(*context.tokenizer, sequence.tokens, prefix.size());
                if (context.echo) {
                    logprobs =
                        prepend_prompt_logprobs(*context.tokenizer, prompt,
                                                results[p].prompt_logprobs, std::move(logprobs));
                }
            }
            choices.push_back({{"index", context.global_index(p, sequence.index)},
                               {"text", prefix + sequence.text},
                               {"logprobs", std::move(logprobs)},
                               {"finish_reason", openai_finish_reason(sequence.finish_reason)}});
        }
    }
    std::sort(choices.begin(), choices.end(),
              [](const Json& a, const Json& b) { return a["index"] < b["index"]; });
    Json response = completion_base(context, identity);
    response["choices"] = std::move(choices);
    response["usage"] = usage_json(results);
    return response;
}

Json completion_chunk(const ResponseContext& context, const CompletionIdentity& identity,
                      int choice_index, const std::string& text, Json logprobs,
                      std::optional<std::string> finish_reason, bool include_usage) {
    Json chunk = completion_base(context, identity);
    chunk["choices"] =
        Json::array({{{"index", choice_index},
                      {"text", text},
                      {"logprobs", std::move(logprobs)},
                      {"finish_reason", finish_reason ? Json(*finish_reason) : Json(nullptr)}}});
    if (include_usage) chunk["usage"] = nullptr;
    return chunk;
}

Json completion_usage_chunk(const ResponseContext& context, const CompletionIdentity& identity,
                            const std::vector<engine::RequestResult>& results) {
    Json chunk = completion_base(context, identity);
    chunk["choices"] = Json::array();
    chunk["usage"] = usage_json(results);
    return chunk;
}

}  // namespace llmserve::server
