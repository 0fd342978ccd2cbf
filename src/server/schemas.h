// Request bodies of the HTTP API, parsed from JSON into typed structs and validated. Pure
// functions (no model, no I/O) so that tests and the fuzzer drive them directly.
//
// Every API adapter parses its body into the one internal ApiRequest: one validation
// (engine::validate through finish_options) and one place for defaults (RequestLimits, filled
// from engine::resolve_generation_settings).
//
// Errors: a body that is not JSON, not an object, a missing required field, an unknown field or a
// field of the wrong JSON type -> MalformedRequest (HTTP 400) naming the field; a value of the
// right type but out of range -> Error(kInvalidArgument) with param() = the field (HTTP 422 on
// /generate, 400 on the OpenAI routes), whose message names the field, the allowed range and the
// value. `null` means "not given". Unknown fields: refused on /generate; ignored on the OpenAI
// routes unless RequestLimits::strict_requests (STRICT_REQUESTS=1).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/generation_settings.h"
#include "engine/sampling/sampling_params.h"
#include "server/tool_calls.h"

namespace llmserve::grammar {
class Constraint;
}

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
    bool strict_requests = false;  // STRICT_REQUESTS: OpenAI routes refuse unknown fields too
};

// A prompt given as text, or (OpenAI) as token ids.
struct Prompt {
    std::string text;
    std::vector<engine::TokenId> token_ids;
    bool is_token_ids = false;
    // false: special tokens written in the text are recognised but no BOS/EOS is added (a
    // rendered chat prompt already holds them, as transformers' add_special_tokens=False).
    bool add_special_tokens = true;
};

// The generation controls shared by /generate and /v1/completions.
struct GenerationOptions {
    engine::SamplingParams sampling;
    engine::StopParams stop;
    int n = 1;                          // samples per prompt
    bool max_new_tokens_given = false;  // false: the default, clamped to the context left
    std::string max_new_tokens_field;   // how the request spells it: "max_length", "max_tokens"
    // Structured output (constraint_fields.h): the compiled grammar and the field that gave it.
    std::shared_ptr<const grammar::Constraint> constraint;
    std::string constraint_field;
};

// /v1/chat/completions: what the model's chat template renders into the prompt.
// Kept in the client's key order: the template's tojson writes tool schemas and arguments as
// transformers does.
struct ChatInputs {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    nlohmann::ordered_json tools = nullptr;
    nlohmann::ordered_json template_kwargs =
        nlohmann::ordered_json::object();  // chat_template_kwargs
    bool add_generation_prompt = true;
    bool continue_final_message = false;
    // How the reply may call `tools`: "auto" when tools are given, else "none".
    ToolChoice tool_choice{ToolChoice::Mode::kNone, {}};
    bool parallel_tool_calls = true;  // a forced reply may hold several calls
};

// What every API's body is parsed into: the prompts, the generation controls, and how the
// answer is shaped.
struct ApiRequest {
    std::vector<Prompt> prompts;  // one, or a batch (/generate, /v1/completions)
    GenerationOptions options;
    bool stream = false;
    bool include_usage = false;      // stream_options.include_usage
    bool echo = false;               // /v1/completions: prepend the prompt to each choice's text
    std::string user;                // accepted and logged, as OpenAI does
    std::optional<ChatInputs> chat;  // set by the chat adapter; prompts filled once rendered
};

// POST /detokenize (vLLM's shape).
struct DetokenizeRequest {
    std::vector<engine::TokenId> tokens;
};

ApiRequest parse_generate_request(std::string_view body, const RequestLimits& limits);
ApiRequest parse_completion_request(std::string_view body, const RequestLimits& limits);
ApiRequest parse_chat_request(std::string_view body, const RequestLimits& limits);
// /tokenize takes a "prompt" or chat "messages" (rendered by the caller with the template).
struct TokenizeRequest {
    std::string prompt;
    std::optional<ChatInputs> chat;
};
TokenizeRequest parse_tokenize_request(std::string_view body, const RequestLimits& limits);
DetokenizeRequest parse_detokenize_request(std::string_view body, const RequestLimits& limits);

// Nesting deeper than this is refused (HTTP 400) before any field is read.
inline constexpr int kMaxJsonDepth = 16;

}  // namespace llmserve::server
