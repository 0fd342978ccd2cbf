#include "server/schemas.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <limits>

#include "common/error.h"
#include "server/errors.h"

namespace llmserve::server {
namespace {

using Json = nlohmann::json;
using engine::TokenId;

Json parse_body(std::string_view body) {
    if (body.empty()) fail_malformed("", "request body is empty; expected a JSON object");
    const Json::parser_callback_t limit_depth = [](int depth, Json::parse_event_t, Json&) {
        if (depth > kMaxJsonDepth) {
            fail_malformed("", "request body nests deeper than {} levels", kMaxJsonDepth);
        }
        return true;
    };
    Json json;
    try {
        json = Json::parse(body.begin(), body.end(), limit_depth);
    } catch (const Json::exception& e) {
        fail_malformed("", "request body is not valid JSON: {}", e.what());
    }
    if (!json.is_object()) {
        fail_malformed("", "request body must be a JSON object, got {}", json.type_name());
    }
    return json;
}

// A short rendering of a value for messages: scalars as JSON (long strings cut), containers by
// type.
std::string describe(const Json& value) {
    if (value.is_array() || value.is_object()) return std::string("an ") + value.type_name();
    std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
    if (text.size() > 64) text = text.substr(0, 61) + "...";
    return text;
}

bool get_bool(const Json& value, const std::string& field) {
    if (!value.is_boolean()) {
        fail_malformed(field, "'{}' must be a boolean, got {}", field, describe(value));
    }
    return value.get<bool>();
}

// An integer in [min, max]. Integral floats (2.0) count as integers, as JSON Schema says.
long long get_integer(const Json& value, const std::string& field, long long min, long long max) {
    long long result = 0;
    bool in_range = true;
    if (value.is_number_unsigned()) {
        const auto u = value.get<std::uint64_t>();
        in_range = u <= static_cast<std::uint64_t>(std::numeric_limits<long long>::max());
        result = in_range ? static_cast<long long>(u) : max;
    } else if (value.is_number_integer()) {
        result = value.get<long long>();
    } else if (value.is_number_float()) {
        const double d = value.get<double>();
        if (d != std::floor(d)) {
            fail_malformed(field, "'{}' must be an integer, got {}", field, describe(value));
        }
        in_range = std::fabs(d) < 9.0e18;
        result = in_range ? static_cast<long long>(d) : max;
    } else {
        fail_malformed(field, "'{}' must be an integer, got {}", field, describe(value));
    }
    if (!in_range || result < min || result > max) {
        fail_param(field, "'{}' must be an integer in [{}, {}], got {}", field, min, max,
                   describe(value));
    }
    return result;
}

float get_number(const Json& value, const std::string& field) {
    if (!value.is_number()) {
        fail_malformed(field, "'{}' must be a number, got {}", field, describe(value));
    }
    return static_cast<float>(value.get<double>());
}

std::string get_string(const Json& value, const std::string& field) {
    if (!value.is_string()) {
        fail_malformed(field, "'{}' must be a string, got {}", field, describe(value));
    }
    return value.get<std::string>();
}

std::vector<std::string> get_strings(const Json& value, const std::string& field) {
    if (value.is_string()) return {value.get<std::string>()};
    if (!value.is_array()) {
        fail_malformed(field, "'{}' must be a string or a list of strings, got {}", field,
                       describe(value));
    }
    std::vector<std::string> strings;
    for (const Json& item : value) {
        if (!item.is_string()) {
            fail_malformed(field, "'{}' must be a string or a list of strings, got an element {}",
                           field, describe(item));
        }
        strings.push_back(item.get<std::string>());
    }
    return strings;
}

std::vector<TokenId> get_token_ids(const Json& value, const std::string& field, int vocab_size) {
    if (!value.is_array()) {
        fail_malformed(field, "'{}' must be a list of token ids, got {}", field, describe(value));
    }
    std::vector<TokenId> ids;
    ids.reserve(value.size());
    for (const Json& item : value) {
        ids.push_back(static_cast<TokenId>(get_integer(item, field, 0, vocab_size - 1)));
    }
    return ids;
}

std::uint64_t get_seed(const Json& value, const std::string& field) {
    if (value.is_number_unsigned()) return value.get<std::uint64_t>();
    return static_cast<std::uint64_t>(
        get_integer(value, field, 0, std::numeric_limits<long long>::max()));
}

// OpenAI's logit_bias: {"<token id>": bias}.
std::vector<std::pair<TokenId, float>> get_logit_bias(const Json& value, const std::string& field,
                                                      int vocab_size) {
    if (!value.is_object()) {
        fail_malformed(field, "'{}' must be an object mapping token ids to biases, got {}", field,
                       describe(value));
    }
    std::vector<std::pair<TokenId, float>> bias;
    for (const auto& [key, item] : value.items()) {
        long long id = -1;
        const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
        if (key.empty() || ec != std::errc{} || end != key.data() + key.size()) {
            fail_malformed(field, "'{}' keys must be token ids, got \"{}\"", field,
                           key.substr(0, 32));
        }
        if (id < 0 || id >= vocab_size) {
            fail_param(field, "'{}' token ids must be in [0, {}], got {}", field, vocab_size - 1,
                       id);
        }
        bias.emplace_back(static_cast<TokenId>(id), get_number(item, field));
    }
    return bias;
}

std::vector<std::vector<TokenId>> get_bad_words_ids(const Json& value, const std::string& field,
                                                    int vocab_size) {
    if (!value.is_array()) {
        fail_malformed(field, "'{}' must be a list of lists of token ids, got {}", field,
                       describe(value));
    }
    std::vector<std::vector<TokenId>> words;
    for (const Json& item : value) words.push_back(get_token_ids(item, field, vocab_size));
    return words;
}

// How one body field is read into the request being built.
template <typename Request>
using FieldReader = std::function<void(const Json& value, Request& request)>;

template <typename Request>
struct Field {
    std::string name;
    FieldReader<Request> read;
};

// Reads every non-null field of `body` with its reader; an unknown field is a 400.
template <typename Request>
void read_fields(const Json& body, const std::vector<Field<Request>>& fields, Request& request) {
    for (const auto& item : body.items()) {
        const std::string& name = item.key();
        const auto field = std::find_if(fields.begin(), fields.end(),
                                        [&](const Field<Request>& f) { return f.name == name; });
        if (field == fields.end()) {
            fail_malformed(name, "unknown field '{}'", name.substr(0, 64));
        }
        if (!item.value().is_null()) field->read(item.value(), request);
    }
}

// Controls common to both completion endpoints.
template <typename Request>
std::vector<Field<Request>> control_fields(const RequestLimits& limits) {
    const int vocab = limits.vocab_size;
    auto sampling = [](Request& r) -> engine::SamplingParams& { return r.options.sampling; };
    auto stop = [](Request& r) -> engine::StopParams& { return r.options.stop; };
    return {
        {"temperature",
         [=](const Json& v, Request& r) {
             sampling(r).temperature = get_number(v, "temperature");
         }},
        {"top_p", [=](const Json& v, Request& r) { sampling(r).top_p = get_number(v, "top_p"); }},
        {"top_k",
         [=](const Json& v, Request& r) {
             sampling(r).top_k = static_cast<int>(get_integer(v, "top_k", 0, vocab));
         }},
        {"min_p", [=](const Json& v, Request& r) { sampling(r).min_p = get_number(v, "min_p"); }},
        {"typical_p",
         [=](const Json& v, Request& r) { sampling(r).typical_p = get_number(v, "typical_p"); }},
        {"repetition_penalty",
         [=](const Json& v, Request& r) {
             sampling(r).repetition_penalty = get_number(v, "repetition_penalty");
         }},
        {"presence_penalty",
         [=](const Json& v, Request& r) {
             sampling(r).presence_penalty = get_number(v, "presence_penalty");
         }},
        {"frequency_penalty",
         [=](const Json& v, Request& r) {
             sampling(r).frequency_penalty = get_number(v, "frequency_penalty");
         }},
        {"no_repeat_ngram_size",
         [=](const Json& v, Request& r) {
             sampling(r).no_repeat_ngram_size = static_cast<int>(
                 get_integer(v, "no_repeat_ngram_size", 0, engine::kMaxNoRepeatNgramSize));
         }},
        {"logit_bias",
         [=](const Json& v, Request& r) {
             sampling(r).logit_bias = get_logit_bias(v, "logit_bias", vocab);
         }},
        {"bad_words_ids",
         [=](const Json& v, Request& r) {
             sampling(r).bad_words_ids = get_bad_words_ids(v, "bad_words_ids", vocab);
         }},
        {"seed", [=](const Json& v, Request& r) { sampling(r).seed = get_seed(v, "seed"); }},
        {"stop", [=](const Json& v, Request& r) { stop(r).stop = get_strings(v, "stop"); }},
        {"stop_token_ids",
         [=](const Json& v, Request& r) {
             stop(r).stop_token_ids = get_token_ids(v, "stop_token_ids", vocab);
         }},
        {"ignore_eos",
         [=](const Json& v, Request& r) { stop(r).ignore_eos = get_bool(v, "ignore_eos"); }},
        {"stream", [](const Json& v, Request& r) { r.stream = get_bool(v, "stream"); }},
    };
}

int read_max_new_tokens(const Json& value, const std::string& field, const RequestLimits& limits,
                        GenerationOptions& options) {
    options.max_new_tokens_given = true;
    options.max_new_tokens_field = field;
    return static_cast<int>(get_integer(value, field, 0, std::max(0, limits.n_positions - 1)));
}

// Replaces whole-word occurrences of `from` in `text` with `to`.
std::string rename_word(std::string text, std::string_view from, std::string_view to) {
    auto is_word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
    for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at)) {
        const std::size_t end = at + from.size();
        if ((at > 0 && is_word(text[at - 1])) || (end < text.size() && is_word(text[end]))) {
            at = end;
            continue;
        }
        text.replace(at, from.size(), to);
        at += to.size();
    }
    return text;
}

// The defaults of the controls that need no "given" flag (a request's own value replaces them).
void apply_model_defaults(GenerationOptions& options, const RequestLimits& limits) {
    options.sampling.top_k = limits.default_top_k;
    options.sampling.repetition_penalty = limits.default_repetition_penalty;
}

// Applies the server defaults to fields the request left out, then validates every control
// (as for a one-token prompt: the real length is checked once the prompt is tokenized).
// Errors about engine field names are reported under the names the request used.
void finish_options(GenerationOptions& options, bool temperature_given, bool top_p_given,
                    bool greedy, const RequestLimits& limits,
                    const std::vector<std::pair<std::string, std::string>>& renames) {
    if (!temperature_given) options.sampling.temperature = limits.default_temperature;
    if (!top_p_given) options.sampling.top_p = limits.default_top_p;
    if (greedy) options.sampling.temperature = 0.0f;
    if (!options.max_new_tokens_given) {
        options.stop.max_new_tokens =
            std::clamp(limits.default_max_new_tokens, 0, std::max(0, limits.n_positions - 1));
    }
    try {
        engine::validate(
            options.sampling, options.stop,
            engine::ModelLimits{limits.vocab_size, limits.n_positions, 1, limits.max_n, options.n});
    } catch (const Error& error) {
        std::string param = error.param();
        std::string message = error.what();
        for (const auto& [engine_name, api_name] : renames) {
            if (param == engine_name) param = api_name;
            message = rename_word(std::move(message), engine_name, api_name);
        }
        throw Error(error.code(), std::move(message), std::move(param));
    }
}

void check_batch_size(std::size_t prompts, int n, const std::string& n_field,
                      const RequestLimits& limits) {
    if (prompts > static_cast<std::size_t>(limits.max_prompts)) {
        fail_param("prompt", "'prompt' may hold at most {} prompts, got {}", limits.max_prompts,
                   prompts);
    }
    if (prompts * static_cast<std::size_t>(n) > static_cast<std::size_t>(limits.max_sequences)) {
        fail_param(
            n_field, "{} prompts x {}={} is {} sequences, more than the limit of {} per request",
            prompts, n_field, n, prompts * static_cast<std::size_t>(n), limits.max_sequences);
    }
}

void check_model(const Json& value, const RequestLimits& limits) {
    const std::string model = get_string(value, "model");
    if (!model.empty() && model != limits.model_name) {
        throw Error(ErrorCode::kNotFound,
                    fmt::format("model '{}' does not exist; this server serves '{}'",
                                model.substr(0, 128), limits.model_name),
                    "model");
    }
}

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

GenerateRequest parse_generate_request(std::string_view body, const RequestLimits& limits) {
    const Json json = parse_body(body);
    bool greedy = false;
    std::vector<Field<GenerateRequest>> fields = control_fields<GenerateRequest>(limits);
    fields.push_back({"prompt", [](const Json& v, GenerateRequest& r) {
                          r.prompts = get_strings(v, "prompt");
                          if (r.prompts.empty()) {
                              fail_param("prompt", "'prompt' must not be an empty list");
                          }
                      }});
    for (const char* name : {"max_length", "max_new_tokens"}) {
        fields.push_back(
            {name, [&, name](const Json& v, GenerateRequest& r) {
                 if (r.options.max_new_tokens_given) {
                     fail_param(name, "give 'max_length' or 'max_new_tokens', not both");
                 }
                 r.options.stop.max_new_tokens = read_max_new_tokens(v, name, limits, r.options);
             }});
    }
    fields.push_back({"min_new_tokens", [&](const Json& v, GenerateRequest& r) {
                          r.options.stop.min_new_tokens = static_cast<int>(
                              get_integer(v, "min_new_tokens", 0, limits.n_positions));
                      }});
    fields.push_back({"num_return_sequences", [&](const Json& v, GenerateRequest& r) {
                          r.options.n = static_cast<int>(
                              get_integer(v, "num_return_sequences", 1, limits.max_n));
                      }});
    fields.push_back({"do_sample", [&](const Json& v, GenerateRequest&) {
                          greedy = !get_bool(v, "do_sample");
                      }});
    fields.push_back({"logprobs", [](const Json& v, GenerateRequest& r) {
                          r.options.sampling.logprobs =
                              static_cast<int>(get_integer(v, "logprobs", 0, engine::kMaxLogprobs));
                      }});
    fields.push_back({"prompt_logprobs", [](const Json& v, GenerateRequest& r) {
                          r.options.sampling.prompt_logprobs = get_bool(v, "prompt_logprobs");
                      }});

    GenerateRequest request;
    request.options.max_new_tokens_field = "max_length";
    apply_model_defaults(request.options, limits);
    read_fields(json, fields, request);
    if (!json.contains("prompt") || json["prompt"].is_null()) {
        fail_malformed("prompt", "'prompt' is required: a string or a list of strings");
    }
    const bool temperature_given = json.contains("temperature") && !json["temperature"].is_null();
    const bool top_p_given = json.contains("top_p") && !json["top_p"].is_null();
    check_batch_size(request.prompts.size(), request.options.n, "num_return_sequences", limits);
    finish_options(
        request.options, temperature_given, top_p_given, greedy, limits,
        {{"max_new_tokens", request.options.max_new_tokens_field}, {"n", "num_return_sequences"}});
    return request;
}

CompletionRequest parse_completion_request(std::string_view body, const RequestLimits& limits) {
    const Json json = parse_body(body);
    std::optional<int> best_of;
    std::vector<Field<CompletionRequest>> fields = control_fields<CompletionRequest>(limits);
    fields.push_back({"model", [&](const Json& v, CompletionRequest&) { check_model(v, limits); }});
    fields.push_back({"prompt", [&](const Json& v, CompletionRequest& r) {
                          r.prompts = get_completion_prompts(v, limits.vocab_size);
                      }});
    fields.push_back({"max_tokens", [&](const Json& v, CompletionRequest& r) {
                          r.options.stop.max_new_tokens =
                              read_max_new_tokens(v, "max_tokens", limits, r.options);
                      }});
    fields.push_back({"min_tokens", [&](const Json& v, CompletionRequest& r) {
                          r.options.stop.min_new_tokens =
                              static_cast<int>(get_integer(v, "min_tokens", 0, limits.n_positions));
                      }});
    fields.push_back({"n", [&](const Json& v, CompletionRequest& r) {
                          r.options.n = static_cast<int>(get_integer(v, "n", 1, limits.max_n));
                      }});
    fields.push_back({"best_of", [&](const Json& v, CompletionRequest&) {
                          best_of = static_cast<int>(get_integer(v, "best_of", 1, limits.max_n));
                      }});
    fields.push_back(
        {"echo", [](const Json& v, CompletionRequest& r) { r.echo = get_bool(v, "echo"); }});
    fields.push_back({"logprobs", [](const Json& v, CompletionRequest& r) {
                          r.options.sampling.logprobs =
                              static_cast<int>(get_integer(v, "logprobs", 0, engine::kMaxLogprobs));
                      }});
    fields.push_back(
        {"stream_options", [](const Json& v, CompletionRequest& r) {
             if (!v.is_object()) {
                 fail_malformed("stream_options", "'stream_options' must be an object, got {}",
                                describe(v));
             }
             for (const auto& [key, item] : v.items()) {
                 if (key != "include_usage") {
                     fail_malformed("stream_options", "unknown field 'stream_options.{}'",
                                    key.substr(0, 64));
                 }
                 if (!item.is_null()) {
                     r.include_usage = get_bool(item, "stream_options.include_usage");
                 }
             }
         }});
    fields.push_back({"suffix", [](const Json& v, CompletionRequest&) {
                          if (!get_string(v, "suffix").empty()) {
                              throw Error(ErrorCode::kUnsupported,
                                          "'suffix' (insertion) is not supported by this model",
                                          "suffix");
                          }
                      }});
    fields.push_back(
        {"user", [](const Json& v, CompletionRequest& r) { r.user = get_string(v, "user"); }});

    CompletionRequest request;
    request.options.max_new_tokens_field = "max_tokens";
    apply_model_defaults(request.options, limits);
    read_fields(json, fields, request);
    if (!json.contains("prompt") || json["prompt"].is_null()) {
        fail_malformed("prompt", "'prompt' is required");
    }
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
    const bool temperature_given = json.contains("temperature") && !json["temperature"].is_null();
    const bool top_p_given = json.contains("top_p") && !json["top_p"].is_null();
    check_batch_size(request.prompts.size(), request.options.n, "n", limits);
    finish_options(request.options, temperature_given, top_p_given, false, limits,
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
    };
    TokenizeRequest request;
    read_fields(json, fields, request);
    if (!json.contains("prompt") || json["prompt"].is_null()) {
        fail_malformed("prompt", "'prompt' is required: a string");
    }
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
    if (!json.contains("tokens") || json["tokens"].is_null()) {
        fail_malformed("tokens", "'tokens' is required: a list of token ids");
    }
    return request;
}

}  // namespace llmserve::server
