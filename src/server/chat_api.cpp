// POST /v1/chat/completions: OpenAI's chat API. The messages are rendered by the model's own chat
// template into one prompt (special tokens recognised, no BOS added: the template writes it),
// generated on the shared path, and answered as chat.completion / chat.completion.chunk objects.
#include <algorithm>
#include <chrono>

#include "grammar/constraint.h"
#include "model/model.h"
#include "server/api_routes.h"
#include "server/generation_path.h"
#include "server/reasoning.h"
#include "server/tool_calls.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::server {
namespace {

using Json = nlohmann::json;

// OpenAI's {"token", "logprob", "bytes"} for one token.
Json token_logprob(const tokenizer::Tokenizer& tokenizer, engine::TokenId id, float logprob) {
    const std::string_view bytes = tokenizer.token_bytes(id);
    Json byte_values = Json::array();
    for (const char c : bytes) byte_values.push_back(static_cast<unsigned char>(c));
    return {{"token", std::string(bytes)}, {"logprob", logprob}, {"bytes", std::move(byte_values)}};
}

// OpenAI's tool_calls entry; `index` only in stream deltas.
Json tool_call_json(const ToolCall& call, std::optional<int> index) {
    Json out = {{"id", "call_" + random_hex(12)},
                {"type", "function"},
                {"function", {{"name", call.name}, {"arguments", call.arguments}}}};
    if (index) out["index"] = *index;
    return out;
}

class ChatFormatter : public ApiFormatter {
  public:
    // `tool_format`: how to read tool calls in replies (kNone: never).
    ChatFormatter(bool split_reasoning, ToolCallFormat tool_format,
                  std::vector<engine::TokenId> end_of_turn)
        : id_("chatcmpl-" + random_hex(12)),
          created_(std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count()),
          split_reasoning_(split_reasoning),
          tool_format_(tool_format),
          end_of_turn_(std::move(end_of_turn)) {}

    Json response(const ResponseContext& rc,
                  const std::vector<engine::RequestResult>& results) override {
        Json choices = Json::array();
        for (std::size_t p = 0; p < results.size(); ++p) {
            for (const engine::SequenceResult& sequence : results[p].sequences) {
                Json message = {{"role", "assistant"}};
                std::string content = sequence.text;
                if (split_reasoning_) {
                    ReasoningSplit split = split_reasoning(sequence.text);
                    content = std::move(split.content);
                    if (split.has_reasoning) message["reasoning_content"] = split.reasoning;
                }
                ToolCallSplit tools = split_tool_calls(tool_format_, content);
                Json finish_reason = openai_finish_reason(sequence.finish_reason);
                message["content"] = std::move(tools.content);
                if (!tools.calls.empty()) {
                    Json calls = Json::array();
                    for (const ToolCall& call : tools.calls) {
                        calls.push_back(tool_call_json(call, std::nullopt));
                    }
                    message["tool_calls"] = std::move(calls);
                    if (message["content"] == "") message["content"] = nullptr;
                    finish_reason = "tool_calls";
                }
                choices.push_back({{"index", rc.global_index(p, sequence.index)},
                                   {"message", std::move(message)},
                                   {"logprobs", logprobs(rc, sequence.tokens)},
                                   {"finish_reason", std::move(finish_reason)}});
            }
        }
        Json response = base(rc, "chat.completion");
        response["choices"] = std::move(choices);
        response["usage"] = usage_json(results);
        return response;
    }

    std::vector<Json> stream_start(const ResponseContext& rc) override {
        const std::size_t choices = rc.prompts.size() * static_cast<std::size_t>(rc.n);
        reasoning_.assign(choices, ReasoningStream());
        tool_calls_.assign(choices, ToolCallStream(tool_format_));
        std::vector<Json> events;
        for (std::size_t i = 0; i < choices; ++i) {
            events.push_back(chunk(rc, static_cast<int>(i),
                                   {{"role", "assistant"}, {"content", ""}}, nullptr, nullptr));
        }
        return events;
    }

    std::vector<Json> stream_delta(const ResponseContext& rc, int choice, std::size_t,
                                   const std::string& text,
                                   const std::vector<engine::GeneratedToken>& tokens,
                                   std::size_t) override {
        ReasoningSplit split =
            split_reasoning_ ? reasoning_[choice].feed(text) : ReasoningSplit{{}, text, false};
        split.content = tool_calls_[choice].feed(split.content);
        return split_events(rc, choice, std::move(split), logprobs(rc, tokens));
    }

    std::vector<Json> stream_finish(const ResponseContext& rc, int choice,
                                    const engine::SequenceResult& sequence,
                                    const std::string& tail) override {
        ReasoningSplit rest{{}, tail, false};
        if (split_reasoning_) {
            ReasoningStream& stream = reasoning_[choice];
            rest = stream.feed(tail);
            const ReasoningSplit flushed = stream.finish();
            rest.reasoning += flushed.reasoning;
            rest.content += flushed.content;
        }
        ToolCallStream& tool_stream = tool_calls_[choice];
        rest.content = tool_stream.feed(rest.content);
        ToolCallSplit tools = tool_stream.finish();
        rest.content += tools.content;
        std::vector<Json> events = split_events(rc, choice, std::move(rest), nullptr);
        // Each call in one delta (its arguments whole: they are only known once it parsed).
        for (std::size_t i = 0; i < tools.calls.size(); ++i) {
            const Json call = tool_call_json(tools.calls[i], static_cast<int>(i));
            events.push_back(
                chunk(rc, choice, {{"tool_calls", Json::array({call})}}, nullptr, nullptr));
        }
        events.push_back(chunk(rc, choice, Json::object(), nullptr,
                               tools.calls.empty()
                                   ? Json(openai_finish_reason(sequence.finish_reason))
                                   : Json("tool_calls")));
        return events;
    }

    std::vector<Json> stream_end(const ResponseContext& rc,
                                 const std::vector<engine::RequestResult>& results) override {
        if (!rc.include_usage) return {};
        Json usage = base(rc, "chat.completion.chunk");
        usage["choices"] = Json::array();
        usage["usage"] = usage_json(results);
        return {std::move(usage)};
    }

  private:
    Json base(const ResponseContext& rc, const char* object) const {
        return {{"id", id_}, {"object", object}, {"created", created_}, {"model", rc.model_name}};
    }

    Json chunk(const ResponseContext& rc, int choice, Json delta, Json logprobs,
               Json finish_reason) const {
        Json out = base(rc, "chat.completion.chunk");
        out["choices"] = Json::array({{{"index", choice},
                                       {"delta", std::move(delta)},
                                       {"logprobs", std::move(logprobs)},
                                       {"finish_reason", std::move(finish_reason)}}});
        if (rc.include_usage) out["usage"] = nullptr;
        return out;
    }

    std::vector<Json> split_events(const ResponseContext& rc, int choice, ReasoningSplit split,
                                   Json token_logprobs) const {
        std::vector<Json> events;
        if (!split.reasoning.empty()) {
            events.push_back(chunk(rc, choice, {{"reasoning_content", std::move(split.reasoning)}},
                                   std::exchange(token_logprobs, nullptr), nullptr));
        }
        if (!split.content.empty() || !token_logprobs.is_null()) {
            events.push_back(chunk(rc, choice, {{"content", std::move(split.content)}},
                                   std::move(token_logprobs), nullptr));
        }
        return events;
    }

    // Chat's {"content": [{token, logprob, bytes, top_logprobs}]}; null when not asked for. The
    // end-of-turn token is not part of the content, so it has no entry either.
    Json logprobs(const ResponseContext& rc,
                  const std::vector<engine::GeneratedToken>& tokens) const {
        if (!rc.logprobs) return nullptr;
        Json content = Json::array();
        for (const engine::GeneratedToken& token : tokens) {
            if (std::find(end_of_turn_.begin(), end_of_turn_.end(), token.token) !=
                end_of_turn_.end()) {
                continue;
            }
            Json entry = token_logprob(*rc.tokenizer, token.token, token.logprob);
            Json top = Json::array();
            for (const engine::TokenLogprob& alternative : token.top) {
                top.push_back(token_logprob(*rc.tokenizer, alternative.token, alternative.logprob));
            }
            entry["top_logprobs"] = std::move(top);
            content.push_back(std::move(entry));
        }
        if (content.empty()) return nullptr;
        return {{"content", std::move(content)}};
    }

    const std::string id_;
    const long long created_;
    const bool split_reasoning_;
    const ToolCallFormat tool_format_;
    const std::vector<engine::TokenId> end_of_turn_;
    std::vector<ReasoningStream> reasoning_;  // per choice, when streaming
    std::vector<ToolCallStream> tool_calls_;  // per choice, when streaming
};

// tool_choice "required" or a named function: the reply is constrained to calls in the model's
// format, so that it always parses.
void constrain_to_tool_calls(ApiRequest& request, ToolCallFormat format) {
    const ChatInputs& chat = *request.chat;
    if (format == ToolCallFormat::kNone) {
        fail_param("tool_choice",
                   "'tool_choice' forces a tool call, but the model's chat template shows no known "
                   "tool-call format (and TOOL_CALL_PARSER does not name one); start the server "
                   "with TOOL_CALL_PARSER=hermes or llama3_json");
    }
    const std::optional<std::string> only_function =
        chat.tool_choice.mode == ToolChoice::Mode::kFunction
            ? std::optional<std::string>(chat.tool_choice.function)
            : std::nullopt;
    request.options.constraint_field = "tool_choice";
    request.options.constraint = grammar::compile_constraint(
        {grammar::ConstraintSpec::Kind::kGrammar,
         tool_call_gbnf(format, chat.tools, only_function, chat.parallel_tool_calls),
         {},
         "tool_choice"});
}

}  // namespace

std::string render_chat_prompt(const LoadedModel& model, const ChatInputs& inputs) {
    if (!model.chat_template) {
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("the model '{}' has no chat template (no chat_template.jinja, "
                                "chat_template.json or 'chat_template' in tokenizer_config.json); "
                                "start the server with CHAT_TEMPLATE=/path/to/template.jinja to "
                                "give one, or use /v1/completions with a plain prompt",
                                model.engine->model().name()),
                    "messages");
    }
    chat::OrderedChatTemplateInputs template_inputs;
    template_inputs.messages = inputs.messages;
    template_inputs.tools = inputs.tools;
    template_inputs.add_generation_prompt = inputs.add_generation_prompt;
    template_inputs.extra = inputs.template_kwargs;
    return inputs.continue_final_message
               ? model.chat_template->render_continuation_ordered(template_inputs)
               : model.chat_template->render_ordered(template_inputs);
}

ApiResponse chat_route(ServingState& state, const ApiCall& call) {
    const LoadedModel model = state.require_model();
    const engine::Engine& e = *model.engine;
    ApiRequest request = parse_chat_request(call.body, state.request_limits(e));
    request.prompts = {Prompt{render_chat_prompt(model, *request.chat), {}, false, false}};
    // A turn ends at every end-of-turn id: the engine stops at config.json's and
    // generation_config.json's EOS ids; the tokenizer's EOS (often <|eot_id|>-like) joins them.
    std::vector<engine::TokenId> end_of_turn(e.model().config().eos_token_ids.begin(),
                                             e.model().config().eos_token_ids.end());
    for (const int id : e.model().generation_defaults().eos_token_ids) end_of_turn.push_back(id);
    if (const auto eos = e.tokenizer().eos_token_id();
        eos && *eos < e.model().config().vocab_size) {
        end_of_turn.push_back(*eos);
        auto& stop_ids = request.options.stop.stop_token_ids;
        if (std::find(stop_ids.begin(), stop_ids.end(), *eos) == stop_ids.end()) {
            stop_ids.push_back(*eos);
        }
    }
    ToolCallFormat tool_format = ToolCallFormat::kNone;
    if (request.chat->tool_choice.mode != ToolChoice::Mode::kNone) {
        tool_format = tool_call_format(state.config().tool_call_parser,
                                       model.chat_template->source_for_tools());
        if (request.chat->tool_choice.forces_call()) constrain_to_tool_calls(request, tool_format);
    }
    const bool split = state.config().reasoning_parser == "think";
    return run_generation(
        state, model, call, request,
        std::make_shared<ChatFormatter>(split, tool_format, std::move(end_of_turn)));
}

}  // namespace llmserve::server
