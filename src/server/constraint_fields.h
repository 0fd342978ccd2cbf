// Structured output: the request fields that constrain a generation to a grammar (docs/API.md,
// "Structured output"), each compiled once per distinct content by grammar::compile_constraint into
// GenerationOptions::constraint. A request may give at most one.
#pragma once

#include <vector>

#include "server/request_fields.h"

namespace llmserve::server::fields {

// /v1/completions and /v1/chat/completions: response_format (OpenAI), grammar and json_schema
// (llama.cpp), guided_regex, guided_choice and guided_json (vLLM).
std::vector<Field<ApiRequest>> openai_constraint_fields();
// /generate: json_schema, grammar, regex, choice.
std::vector<Field<ApiRequest>> generate_constraint_fields();

}  // namespace llmserve::server::fields
