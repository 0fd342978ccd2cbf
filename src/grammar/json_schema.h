// JSON Schema (the subset OpenAI's strict structured outputs accept, and a little more) as a GBNF
// grammar whose sentences are compact JSON: no whitespace between tokens, object properties in
// the order the schema lists them. See docs/API.md "Structured output" for the keyword list.
#pragma once

#include <string>
#include <string_view>

namespace llmserve::grammar {

struct JsonSchemaOptions {
    // Properties in byte order of their names instead of the schema's order: the order
    // nlohmann::json::dump() writes, which the JSON Schema Test Suite check compares against.
    bool sorted_properties = false;
};

// Throws Error(kInvalidArgument, param "json_schema") naming the keyword and its JSON pointer
// for anything it cannot enforce exactly (never ignores a constraint silently).
std::string json_schema_to_gbnf(std::string_view schema_json,
                                const JsonSchemaOptions& options = {});

// Any JSON object (OpenAI's response_format json_object).
std::string json_object_gbnf();

}  // namespace llmserve::grammar
