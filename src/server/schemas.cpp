#include "server/schemas.h"

#include <iterator>

#include "common/error.h"
#include "server/chat_schema.h"
#include "server/constraint_fields.h"
#include "server/request_fields.h"

namespace llmserve::server {
namespace {

using namespace fields;

// OpenAI prompt forms: "text", ["text", ...], [id, ...], [[id, ...], ...].
std::vector<Prompt> get_completion_prompts(const Json& value, int vocab_size) {
    if (value.is_string()) return {Prompt{value.get<std::string>(), {}, false}};
    if (!value.is_array()) {
        fail_malformed("prompt",
                       "'prompt' must be a string, a list of strings, a list of token ids or a "
                       "list of lists of token ids, got {}",
                       describe(value));
    }
    if (value.empty()) fail_param("prompt", "'prompt' must not be an empty list");
    std::vector<Prompt> prompts;
    const Json& first = value.front();
    if (first.is_number()) {
        prompts.push_back(Prompt{{}, get_token_ids(value, "prompt", vocab_size), true});
        return prompts;
    }
    for (const Json& item : value) {
        if (first.is_string() && item.is_string()) {
            prompts.push_back(Prompt{item.get<std::string>(), {}, false});
        } else if (first.is_array() && item.is_array()) {
            if (item.empty()) fail_param("prompt", "'prompt' token lists must not be empty");
            prompts.push_back(Prompt{{}, get_token_ids(item, "prompt", vocab_size), true});
        } else {
            fail_malformed("prompt",
                           "'prompt' lists must hold only strings or only lists of token ids, "
                           "got an element {}",
                           describe(item));
        }
    }
    return prompts;
}

}  // namespace

ApiRequest parse_generate_request(std::string_view body, const RequestLimits& limits) {
    const Json json = parse_body(body);
    bool greedy = false;
    std::vector<Field<ApiRequest>> fields = control_fields(limits);
    std::ranges::move(generate_constraint_fields(), std::back_inserter(fields));
    fields.push_back({"prompt", [](const Json& v, ApiRequest& r) {
                          const auto texts = get_strings(v, "prompt");
                          if (texts.empty()) {
                              fail_param("prompt", "'prompt' must not be an empty list");
                          }
                          for (const std::string& text : texts)
                              r.prompts.push_back(Prompt{text, {}, false});
                      }});
    for (const char* name : {"max_length", "max_new_tokens"}) {
        fields.push_back(
            {name, [&, name](const Json& v, ApiRequest& r) {
                 if (r.options.max_new_tokens_given) {
                     fail_param(name, "give 'max_length' or 'max_new_tokens', not both");
                 }
                 r.options.stop.max_new_tokens = read_max_new_tokens(v, name, limits, r.options);
             }});
    }
    fields.push_back({"min_new_tokens", [&](const Json& v, ApiRequest& r) {
                          r.options.stop.min_new_tokens = static_cast<int>(
                              get_integer(v, "min_new_tokens", 0, limits.n_positions));
                      }});
    fields.push_back({"num_return_sequences", [&](const Json& v, ApiRequest& r) {
                          r.options.n = static_cast<int>(
                              get_integer(v, "num_return_sequences", 1, limits.max_n));
                      }});
    fields.push_back(
        {"do_sample", [&](const Json& v, ApiRequest&) { greedy = !get_bool(v, "do_sample"); }});
    fields.push_back({"logprobs", [](const Json& v, ApiRequest& r) {
                          r.options.sampling.logprobs =
                              static_cast<int>(get_integer(v, "logprobs", 0, engine::kMaxLogprobs));
                      }});
    fields.push_back({"prompt_logprobs", [](const Json& v, ApiRequest& r) {
                          r.options.sampling.prompt_logprobs = get_bool(v, "prompt_logprobs");
                      }});

    ApiRequest request;
    request.options.max_new_tokens_field = "max_length";
    apply_model_defaults(request.options, limits);
    read_fields(json, fields, request);
    if (!given(json, "prompt")) {
        fail_malformed("prompt", "'prompt' is required: a string or a list of strings");
    }
    check_batch_size(request.prompts.size(), request.options.n, "num_return_sequences", limits);
    finish_options(
        request.options, given(json, "temperature"), given(json, "top_p"), greedy, limits,
        {{"max_new_tokens", request.options.max_new_tokens_field}, {"n", "num_return_sequences"}});
    return request;
}

ApiRequest parse_completion_request(std::string_view body, const RequestLimits& limits) {
    const Json json = parse_body(body);
    std::optional<int> best_of;
    std::vector<Field<ApiRequest>> fields = control_fields(limits);
    std::ranges::move(openai_constraint_fields(), std::back_inserter(fields));
    fields.push_back({"model", [&](const Json& v, ApiRequest&) { check_model(v, limits); }});
    fields.push_back({"prompt", [&](const Json& v, ApiRequest& r) {
                          r.prompts = get_completion_prompts(v, limits.vocab_size);
                      }});
    fields.push_back({"max_tokens", [&](const Json& v, ApiRequest& r) {
                          r.options.stop.max_new_tokens =
                              read_max_new_tokens(v, "max_tokens", limits, r.options);
                      }});
    fields.push_back({"min_tokens", [&](const Json& v, ApiRequest& r) {
                          r.options.stop.min_new_tokens =
                              static_cast<int>(get_integer(v, "min_tokens", 0, limits.n_positions));
                      }});
    fields.push_back({"n", [&](const Json& v, ApiRequest& r) {
                          r.options.n = static_cast<int>(get_integer(v, "n", 1, limits.max_n));
                      }});
    fields.push_back({"best_of", [&](const Json& v, ApiRequest&) {
                          best_of = static_cast<int>(get_integer(v, "best_of", 1, limits.max_n));
                      }});
    fields.push_back({"echo", [](const Json& v, ApiRequest& r) { r.echo = get_bool(v, "echo"); }});
    fields.push_back({"logprobs", [](const Json& v, ApiRequest& r) {
                          r.options.sampling.logprobs =
                              static_cast<int>(get_integer(v, "logprobs", 0, engine::kMaxLogprobs));
                      }});
    fields.push_back({"stream_options", [&](const Json& v, ApiRequest& r) {
                          read_stream_options(v, r, !limits.strict_requests);
                      }});
    fields.push_back({"suffix", [](const Json& v, ApiRequest&) {
                          if (!get_string(v, "suffix").empty()) {
                              throw Error(ErrorCode::kUnsupported,
                                          "'suffix' (insertion) is not supported by this model",
                                          "suffix");
                          }
                      }});
    fields.push_back(
        {"user", [](const Json& v, ApiRequest& r) { r.user = get_string(v, "user"); }});

    ApiRequest request;
    request.options.max_new_tokens_field = "max_tokens";
    apply_model_defaults(request.options, limits);
    read_fields(json, fields, request, !limits.strict_requests);
    if (!given(json, "prompt")) fail_malformed("prompt", "'prompt' is required");
    if (best_of && *best_of != request.options.n) {
        throw Error(ErrorCode::kUnsupported,
                    fmt::format("'best_of' must equal 'n' ({}), got {}: choosing the best of "
                                "several samples is not supported",
                                request.options.n, *best_of),
                    "best_of");
    }
    if (request.echo && request.options.sampling.logprobs) {
        request.options.sampling.prompt_logprobs = true;
    }
    check_batch_size(request.prompts.size(), request.options.n, "n", limits);
    finish_options(request.options, given(json, "temperature"), given(json, "top_p"), false, limits,
                   {{"max_new_tokens", "max_tokens"}, {"min_new_tokens", "min_tokens"}});
    return request;
}

TokenizeRequest parse_tokenize_request(std::string_view body, const RequestLimits& limits) {
    const Json json = parse_body(body);
    const std::vector<Field<TokenizeRequest>> fields = {
        {"prompt", [](const Json& v, TokenizeRequest& r) { r.prompt = get_string(v, "prompt"); }},
        {"model", [&](const Json& v, TokenizeRequest&) { check_model(v, limits); }},
        {"add_special_tokens",
         [](const Json& v, TokenizeRequest&) {
             get_bool(v, "add_special_tokens");  // GPT-2 adds none either way
         }},
        {"messages",
         [](const Json& v, TokenizeRequest& r) {
             if (!r.chat) r.chat.emplace();  // keeps add_generation_prompt, read before it
             r.chat->messages = read_chat_messages(v);
         }},
        {"add_generation_prompt",
         [](const Json& v, TokenizeRequest& r) {
             if (!r.chat) r.chat.emplace();
             r.chat->add_generation_prompt = get_bool(v, "add_generation_prompt");
         }},
        {"chat_template_kwargs",
         [](const Json& v, TokenizeRequest& r) {
             if (!r.chat) r.chat.emplace();
             r.chat->template_kwargs = read_template_kwargs(v);
         }},
        {"tools",
         [](const Json& v, TokenizeRequest& r) {
             if (!r.chat) r.chat.emplace();
             r.chat->tools = read_tools(v);
         }},
    };
    TokenizeRequest request;
    read_fields(json, fields, request);
    if (given(json, "prompt") == given(json, "messages")) {
        fail_malformed(given(json, "prompt") ? "messages" : "prompt",
                       "give exactly one of 'prompt' (a string) and 'messages' (a chat)");
    }
    if (request.chat && !given(json, "messages")) {
        fail_malformed("messages",
                       "'add_generation_prompt', 'chat_template_kwargs' and 'tools' need "
                       "'messages'");
    }
    if (request.chat) keep_client_key_order(*request.chat, body);
    return request;
}

DetokenizeRequest parse_detokenize_request(std::string_view body, const RequestLimits& limits) {
    const Json json = parse_body(body);
    const std::vector<Field<DetokenizeRequest>> fields = {
        {"tokens",
         [&](const Json& v, DetokenizeRequest& r) {
             r.tokens = get_token_ids(v, "tokens", limits.vocab_size);
         }},
        {"model", [&](const Json& v, DetokenizeRequest&) { check_model(v, limits); }},
    };
    DetokenizeRequest request;
    read_fields(json, fields, request);
    if (!given(json, "tokens")) {
        fail_malformed("tokens", "'tokens' is required: a list of token ids");
    }
    return request;
}

}  // namespace llmserve::server
