#include "server/request_fields.h"

#include <charconv>
#include <cmath>
#include <limits>

#include "common/error.h"

namespace llmserve::server::fields {
namespace {

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

}  // namespace

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

// Every seed the engine takes: the integers [0, 2^64 - 1]. A number written with a fraction or
// exponent counts when it is integral and below 2^53, where it is exactly the number written
// (1e3 is 1000); above, the JSON parser has already rounded it, so it is refused.
std::uint64_t get_seed(const Json& value, const std::string& field) {
    constexpr double kTwoTo53 = 9007199254740992.0;
    constexpr double kTwoTo64 = 18446744073709551616.0;
    constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
    if (value.is_number_unsigned()) return value.get<std::uint64_t>();
    const double number = value.is_number() ? value.get<double>() : 0.5;
    if (number != std::floor(number)) {
        fail_malformed(field, "'{}' must be an integer in [0, {}], got {}", field, kMax,
                       describe(value));
    }
    if (number < 0 || number >= kTwoTo64) {
        fail_param(field, "'{}' must be an integer in [0, {}], got {}", field, kMax,
                   describe(value));
    }
    if (number >= kTwoTo53) {
        fail_param(field,
                   "'{}' must be written as a plain integer (no fraction or exponent) from 2^53 "
                   "on, where such a JSON number is no longer exact; got {}",
                   field, describe(value));
    }
    return static_cast<std::uint64_t>(number);
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

bool given(const Json& body, const char* field) {
    return body.contains(field) && !body[field].is_null();
}

// Controls common to every generation API.
std::vector<Field<ApiRequest>> control_fields(const RequestLimits& limits) {
    const int vocab = limits.vocab_size;
    auto sampling = [](ApiRequest& r) -> engine::SamplingParams& { return r.options.sampling; };
    auto stop = [](ApiRequest& r) -> engine::StopParams& { return r.options.stop; };
    return {
        {"temperature",
         [=](const Json& v, ApiRequest& r) {
             sampling(r).temperature = get_number(v, "temperature");
         }},
        {"top_p",
         [=](const Json& v, ApiRequest& r) { sampling(r).top_p = get_number(v, "top_p"); }},
        {"top_k",
         [=](const Json& v, ApiRequest& r) {
             sampling(r).top_k = static_cast<int>(get_integer(v, "top_k", 0, vocab));
         }},
        {"min_p",
         [=](const Json& v, ApiRequest& r) { sampling(r).min_p = get_number(v, "min_p"); }},
        {"typical_p",
         [=](const Json& v, ApiRequest& r) { sampling(r).typical_p = get_number(v, "typical_p"); }},
        {"repetition_penalty",
         [=](const Json& v, ApiRequest& r) {
             sampling(r).repetition_penalty = get_number(v, "repetition_penalty");
         }},
        {"presence_penalty",
         [=](const Json& v, ApiRequest& r) {
             sampling(r).presence_penalty = get_number(v, "presence_penalty");
         }},
        {"frequency_penalty",
         [=](const Json& v, ApiRequest& r) {
             sampling(r).frequency_penalty = get_number(v, "frequency_penalty");
         }},
        {"no_repeat_ngram_size",
         [=](const Json& v, ApiRequest& r) {
             sampling(r).no_repeat_ngram_size = static_cast<int>(
                 get_integer(v, "no_repeat_ngram_size", 0, engine::kMaxNoRepeatNgramSize));
         }},
        {"logit_bias",
         [=](const Json& v, ApiRequest& r) {
             sampling(r).logit_bias = get_logit_bias(v, "logit_bias", vocab);
         }},
        {"bad_words_ids",
         [=](const Json& v, ApiRequest& r) {
             sampling(r).bad_words_ids = get_bad_words_ids(v, "bad_words_ids", vocab);
         }},
        {"seed", [=](const Json& v, ApiRequest& r) { sampling(r).seed = get_seed(v, "seed"); }},
        {"stop", [=](const Json& v, ApiRequest& r) { stop(r).stop = get_strings(v, "stop"); }},
        {"stop_token_ids",
         [=](const Json& v, ApiRequest& r) {
             stop(r).stop_token_ids = get_token_ids(v, "stop_token_ids", vocab);
         }},
        {"ignore_eos",
         [=](const Json& v, ApiRequest& r) { stop(r).ignore_eos = get_bool(v, "ignore_eos"); }},
        {"stream", [](const Json& v, ApiRequest& r) { r.stream = get_bool(v, "stream"); }},
    };
}

int read_max_new_tokens(const Json& value, const std::string& field, const RequestLimits& limits,
                        GenerationOptions& options) {
    options.max_new_tokens_given = true;
    options.max_new_tokens_field = field;
    return static_cast<int>(get_integer(value, field, 0, std::max(0, limits.n_positions - 1)));
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
        throw ModelNotFound(fmt::format("model '{}' does not exist; this server serves '{}'",
                                        model.substr(0, 128), limits.model_name));
    }
}

void read_stream_options(const Json& value, ApiRequest& request, bool ignore_unknown) {
    if (!value.is_object()) {
        fail_malformed("stream_options", "'stream_options' must be an object, got {}",
                       describe(value));
    }
    for (const auto& [key, item] : value.items()) {
        if (key != "include_usage") {
            if (ignore_unknown) continue;
            fail_malformed("stream_options", "unknown field 'stream_options.{}'",
                           key.substr(0, 64));
        }
        if (!item.is_null()) request.include_usage = get_bool(item, "stream_options.include_usage");
    }
}

}  // namespace llmserve::server::fields
