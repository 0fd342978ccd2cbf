// Request bodies of the HTTP API, parsed from JSON into typed structs and validated. Pure
// functions (no model, no I/O) so that tests and the fuzzer drive them directly.
//
// Errors: a body that is not JSON, not an object, a missing required field, an unknown field or a
// field of the wrong JSON type -> MalformedRequest (HTTP 400) naming the field; a value of the
// right type but out of range -> Error(kInvalidArgument) with param() = the field (HTTP 422),
// whose message names the field, the allowed range and the value. `null` means "not given".
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "engine/generation_settings.h"
#include "engine/sampling/sampling_params.h"

namespace llmserve::server {

// What parsing needs to know about the served model and the server's settings.
struct RequestLimits {
    std::string model_name;  // the served model; an OpenAI "model" must equal it when given
    int vocab_size = 0;
    int n_positions = 0;     // context window
    int max_n = 16;          // most samples per prompt (num_return_sequences, n)
    int max_prompts = 32;    // most prompts in one batch request
    int max_sequences = 64;  // most prompts x samples in one request
    // Defaults for fields a request leaves out (engine::resolve_generation_settings).
    int default_max_new_tokens = engine::GenerationSettings{}.max_new_tokens;
    float default_temperature = static_cast<float>(engine::GenerationSettings{}.temperature);
    float default_top_p = static_cast<float>(engine::GenerationSettings{}.top_p);
    int default_top_k = engine::GenerationSettings{}.top_k;
    float default_repetition_penalty = engine::GenerationSettings{}.repetition_penalty;
};

// A prompt given as text, or (OpenAI) as token ids.
struct Prompt {
    std::string text;
    std::vector<engine::TokenId> token_ids;
    bool is_token_ids = false;
};

// The generation controls shared by /generate and /v1/completions.
struct GenerationOptions {
    engine::SamplingParams sampling;
    engine::StopParams stop;
    int n = 1;                          // samples per prompt
    bool max_new_tokens_given = false;  // false: the default, clamped to the context left
    std::string max_new_tokens_field;   // how the request spells it: "max_length", "max_tokens"
};

// POST /generate.
struct GenerateRequest {
    std::vector<std::string> prompts;  // one, or a batch when the request gave a list
    GenerationOptions options;
    bool stream = false;
};

// POST /v1/completions (OpenAI's legacy completions API plus the usual extensions).
struct CompletionRequest {
    std::vector<Prompt> prompts;
    GenerationOptions options;
    bool stream = false;
    bool include_usage = false;  // stream_options.include_usage
    bool echo = false;           // prepend the prompt to each choice's text
    std::string user;            // accepted and logged, as OpenAI does
};

// POST /tokenize and POST /detokenize (vLLM's shapes).
struct TokenizeRequest {
    std::string prompt;
};
struct DetokenizeRequest {
    std::vector<engine::TokenId> tokens;
};

GenerateRequest parse_generate_request(std::string_view body, const RequestLimits& limits);
CompletionRequest parse_completion_request(std::string_view body, const RequestLimits& limits);
TokenizeRequest parse_tokenize_request(std::string_view body, const RequestLimits& limits);
DetokenizeRequest parse_detokenize_request(std::string_view body, const RequestLimits& limits);

// Nesting deeper than this is refused (HTTP 400) before any field is read.
inline constexpr int kMaxJsonDepth = 16;

}  // namespace llmserve::server
