// The pieces every request schema is built from: typed readers of JSON fields (a wrong JSON type
// is a MalformedRequest naming the field, a value out of range an Error(kInvalidArgument) naming
// it), a table of field readers, and the generation controls the APIs share.
#pragma once

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/errors.h"
#include "server/schemas.h"

namespace llmserve::server::fields {

using Json = nlohmann::json;
using engine::TokenId;

// The body as a JSON object (depth limited to kMaxJsonDepth).
Json parse_body(std::string_view body);
// A short rendering of a value for messages: scalars as JSON (long strings cut), containers by
// type.
std::string describe(const Json& value);

bool get_bool(const Json& value, const std::string& field);
// An integer in [min, max]. Integral floats (2.0) count as integers, as JSON Schema says.
long long get_integer(const Json& value, const std::string& field, long long min, long long max);
float get_number(const Json& value, const std::string& field);
std::string get_string(const Json& value, const std::string& field);
std::vector<std::string> get_strings(const Json& value, const std::string& field);
std::vector<TokenId> get_token_ids(const Json& value, const std::string& field, int vocab_size);
std::uint64_t get_seed(const Json& value, const std::string& field);
// OpenAI's logit_bias: {"<token id>": bias}.
std::vector<std::pair<TokenId, float>> get_logit_bias(const Json& value, const std::string& field,
                                                      int vocab_size);
std::vector<std::vector<TokenId>> get_bad_words_ids(const Json& value, const std::string& field,
                                                    int vocab_size);
// Whether `field` is present and not null.
bool given(const Json& body, const char* field);

template <typename Request>
using FieldReader = std::function<void(const Json& value, Request& request)>;

template <typename Request>
struct Field {
    std::string name;
    FieldReader<Request> read;
};

// Reads every non-null field of `body` with its reader; an unknown field is a 400, or skipped
// when `ignore_unknown` (OpenAI clients send vendor extras).
template <typename Request>
void read_fields(const Json& body, const std::vector<Field<Request>>& fields, Request& request,
                 bool ignore_unknown = false) {
    for (const auto& item : body.items()) {
        const std::string& name = item.key();
        const auto field = std::find_if(fields.begin(), fields.end(),
                                        [&](const Field<Request>& f) { return f.name == name; });
        if (field == fields.end()) {
            if (ignore_unknown) continue;
            fail_malformed(name, "unknown field '{}'", name.substr(0, 64));
        }
        if (!item.value().is_null()) field->read(item.value(), request);
    }
}

// Controls common to every generation API (sampling, stop, stream).
std::vector<Field<ApiRequest>> control_fields(const RequestLimits& limits);

// Reads a max-new-tokens field ("max_length", "max_tokens", ...) and notes how it was spelled.
int read_max_new_tokens(const Json& value, const std::string& field, const RequestLimits& limits,
                        GenerationOptions& options);
// stream_options: {"include_usage": bool}; unknown keys follow read_fields' policy.
void read_stream_options(const Json& value, ApiRequest& request, bool ignore_unknown);

// The defaults of the controls that need no "given" flag (a request's own value replaces them).
void apply_model_defaults(GenerationOptions& options, const RequestLimits& limits);

// Applies the server defaults to fields the request left out, then validates every control
// (as for a one-token prompt: the real length is checked once the prompt is tokenized).
// Errors about engine field names are reported under the names the request used.
void finish_options(GenerationOptions& options, bool temperature_given, bool top_p_given,
                    bool greedy, const RequestLimits& limits,
                    const std::vector<std::pair<std::string, std::string>>& renames);

void check_batch_size(std::size_t prompts, int n, const std::string& n_field,
                      const RequestLimits& limits);
// An OpenAI "model" must name the served model (ModelNotFound otherwise); empty is accepted.
void check_model(const Json& value, const RequestLimits& limits);

}  // namespace llmserve::server::fields
