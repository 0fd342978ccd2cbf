// The GBNF pieces JSON Schema compiles to that do not depend on the schema's structure: the
// generic JSON value rules, string formats and integer ranges.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace llmserve::grammar {

// Rules json-value, json-object, json-array, json-string, json-char, json-number, json-integer
// (compact JSON: no whitespace anywhere; strings never hold escaped surrogates).
std::string json_value_rules();

// A GBNF expression for a JSON string of `format` (date-time, date, time, uuid, email), quotes
// included; nullopt for any other format.
std::optional<std::string> format_string(std::string_view format);

// A GBNF expression for the JSON integers in [minimum, maximum] (either may be open).
std::string integer_range(std::optional<std::int64_t> minimum, std::optional<std::int64_t> maximum);

}  // namespace llmserve::grammar
