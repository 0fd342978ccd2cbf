// JSON helpers shared by the io module and the model config parser. Internal: include it only
// from .cpp files, never from a public header (nlohmann/json is expensive to compile).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace llmserve::io {

using Json = nlohmann::json;

// Parses a whole JSON document. Throws kCorruptData naming `source` on a syntax error (with the
// parser's line and column), on a duplicate key within one object (the file is ambiguous), or
// on nesting deeper than 64 levels. Never lets a nlohmann exception escape.
Json parse_json(std::string_view text, const std::string& source);

// The value as a signed 64-bit integer, or nullopt when it is not a JSON integer in that range
// (floats such as 3.0, strings, booleans and unsigned values above INT64_MAX all give nullopt).
std::optional<std::int64_t> json_to_int64(const Json& value);

// Short description of a value for error messages: the scalar itself ("-3", "\"x\"", "1.5"),
// or the type name for arrays and objects (their dump could be huge).
std::string describe_json(const Json& value);

}  // namespace llmserve::io
