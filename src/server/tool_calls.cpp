#include "server/tool_calls.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "common/error.h"
#include "grammar/json_schema.h"

namespace llmserve::server {
namespace {

using OrderedJson = nlohmann::ordered_json;

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kWhitespace = " \t\r\n";

std::string_view trim_left(std::string_view text) {
    const std::size_t start = text.find_first_not_of(kWhitespace);
    return start == std::string_view::npos ? std::string_view() : text.substr(start);
}

std::string_view trim_right(std::string_view text) {
    const std::size_t end = text.find_last_not_of(kWhitespace);
    return end == std::string_view::npos ? std::string_view() : text.substr(0, end + 1);
}

// How many bytes at the end of `text` could begin `tag`.
std::size_t partial_tag_suffix(std::string_view text, std::string_view tag) {
    for (std::size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
        if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
    }
    return 0;
}

// Deeper JSON is not read as a call: re-serialising the arguments recurses once per level.
constexpr int kMaxCallDepth = 512;

// The end (one past the closing brace) of the JSON object that starts text, found by
// brackets and strings alone; npos when it does not close or nests deeper than kMaxCallDepth.
std::size_t json_object_end(std::string_view text) {
    int depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > kMaxCallDepth) return std::string_view::npos;
        } else if (c == '}' || c == ']') {
            if (--depth == 0) return i + 1;
        }
    }
    return std::string_view::npos;
}

// {"name": "...", "<arguments key>": {...}} as a call; the arguments keep the model's key order.
// An "arguments" string is taken as the JSON text it should be.
std::optional<ToolCall> parse_call_object(std::string_view json_text,
                                          std::initializer_list<const char*> argument_keys) {
    const OrderedJson call = OrderedJson::parse(json_text, nullptr, /*allow_exceptions=*/false);
    if (!call.is_object()) return std::nullopt;
    const auto name = call.find("name");
    if (name == call.end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
        return std::nullopt;
    }
    ToolCall out{name->get<std::string>(), "{}"};
    for (const char* key : argument_keys) {
        const auto arguments = call.find(key);
        if (arguments == call.end()) continue;
        if (arguments->is_string()) {
            out.arguments = arguments->get<std::string>();
        } else if (arguments->is_object()) {
            out.arguments = arguments->dump(-1, ' ', false, OrderedJson::error_handler_t::replace);
        } else {
            return std::nullopt;
        }
        break;
    }
    return out;
}

// Whether `text`, the rest of a reply after complete calls, is a call that the end of the reply
// (the token limit) cut short: a JSON object that never closes, or a prefix of `marker`.
bool is_cut_short_call(std::string_view text, std::string_view marker) {
    if (marker.starts_with(text)) return true;
    return text.starts_with('{') && json_object_end(text) == std::string_view::npos;
}

// <tool_call> blocks separated by whitespace; the last one may lack its closing tag (a reply
// that ended at the end-of-turn token right after the JSON). The JSON's extent is found by its
// brackets, so an argument string may contain "</tool_call>". A last call cut short after
// complete ones is dropped.
std::optional<std::vector<ToolCall>> parse_hermes_calls(std::string_view text) {
    std::vector<ToolCall> calls;
    for (text = trim_left(text); !text.empty(); text = trim_left(text)) {
        if (!calls.empty() && is_cut_short_call(text, kHermesOpen)) break;
        if (!text.starts_with(kHermesOpen)) return std::nullopt;
        text = trim_left(text.substr(kHermesOpen.size()));
        if (!calls.empty() && is_cut_short_call(text, "{")) break;
        const std::size_t end =
            text.starts_with('{') ? json_object_end(text) : std::string_view::npos;
        if (end == std::string_view::npos) return std::nullopt;
        auto call = parse_call_object(text.substr(0, end), {"arguments"});
        if (!call) return std::nullopt;
        calls.push_back(std::move(*call));
        text = trim_left(text.substr(end));
        if (text.starts_with(kHermesClose)) {
            text.remove_prefix(kHermesClose.size());
        } else if (kHermesClose.starts_with(text)) {
            break;  // no closing tag, or one cut short
        } else {
            return std::nullopt;
        }
    }
    if (calls.empty()) return std::nullopt;
    return calls;
}

// [<|python_tag|>] {call} [; {call}]*; a last call cut short after complete ones is dropped.
std::optional<std::vector<ToolCall>> parse_llama3_calls(std::string_view text) {
    text = trim_left(text);
    if (text.starts_with(kPythonTag)) text = trim_left(text.substr(kPythonTag.size()));
    std::vector<ToolCall> calls;
    while (!text.empty()) {
        if (!calls.empty() && is_cut_short_call(text, "{")) break;
        if (!text.starts_with('{')) return std::nullopt;
        const std::size_t end = json_object_end(text);
        if (end == std::string_view::npos) return std::nullopt;
        auto call = parse_call_object(text.substr(0, end), {"parameters", "arguments"});
        if (!call) return std::nullopt;
        calls.push_back(std::move(*call));
        text = trim_left(text.substr(end));
        if (text.starts_with(';')) text = trim_left(text.substr(1));
    }
    if (calls.empty()) return std::nullopt;
    return calls;
}

// Where a call begins in `text`, if one does. For llama3_json only a reply that starts (after
// whitespace) with a JSON object or <|python_tag|> can be a call.
std::size_t call_start(ToolCallFormat format, std::string_view text) {
    switch (format) {
        case ToolCallFormat::kHermes:
            return text.find(kHermesOpen);
        case ToolCallFormat::kLlama3Json: {
            const std::size_t start = text.find_first_not_of(kWhitespace);
            if (start == std::string_view::npos) return start;
            const std::string_view rest = text.substr(start);
            return rest.starts_with('{') || rest.starts_with(kPythonTag) ? 0
                                                                         : std::string_view::npos;
        }
        case ToolCallFormat::kNone:
            break;
    }
    return std::string_view::npos;
}

// A $ref of a tool's parameters schema ("#/$defs/x") made to point at the same place once that
// schema sits at `prefix` ("/anyOf/0/properties/arguments") of the call schema. `names`: the keys
// of `schema` name properties or definitions (so "$ref" or "enum" there is a name, not a keyword).
OrderedJson with_refs_under(const OrderedJson& schema, const std::string& prefix,
                            bool names = false) {
    if (schema.is_array()) {
        OrderedJson out = OrderedJson::array();
        for (const OrderedJson& item : schema) out.push_back(with_refs_under(item, prefix));
        return out;
    }
    if (!schema.is_object()) return schema;
    OrderedJson out = OrderedJson::object();
    for (const auto& [key, value] : schema.items()) {
        if (names) {
            out[key] = with_refs_under(value, prefix);
        } else if (key == "$ref" && value.is_string() &&
                   value.get_ref<const std::string&>().starts_with('#')) {
            out[key] = "#" + prefix + value.get<std::string>().substr(1);
        } else if (key == "enum" || key == "const") {
            out[key] = value;  // values, not schemas
        } else {
            const bool keys_are_names = key == "properties" || key == "$defs" ||
                                        key == "definitions" || key == "patternProperties";
            out[key] = with_refs_under(value, prefix, keys_are_names);
        }
    }
    return out;
}

// A tool's parameters; none given: a function without arguments.
OrderedJson parameters_of(const OrderedJson& function) {
    if (function.contains("parameters") && !function["parameters"].is_null()) {
        return function["parameters"];
    }
    return {
        {"type", "object"}, {"properties", OrderedJson::object()}, {"additionalProperties", false}};
}

// Compiles a tool's parameters on their own first, so that a schema the compiler refuses is
// reported against the request field (its JSON pointer relative to that schema).
void check_parameters(const OrderedJson& parameters, std::size_t tool_index) {
    const std::string field = fmt::format("tools[{}].function.parameters", tool_index);
    try {
        grammar::json_schema_to_gbnf(parameters.dump());
    } catch (const Error& error) {
        std::string message = error.what();
        constexpr std::string_view kCompilerField = "json_schema";
        if (message.starts_with(kCompilerField)) message.replace(0, kCompilerField.size(), field);
        throw Error(ErrorCode::kInvalidArgument, std::move(message), field);
    }
}

}  // namespace

ToolCallFormat tool_call_format_of_template(std::string_view template_source) {
    if (template_source.find(kHermesOpen) != std::string_view::npos) return ToolCallFormat::kHermes;
    if (template_source.find(kPythonTag) != std::string_view::npos ||
        template_source.find("<|start_header_id|>") != std::string_view::npos) {
        return ToolCallFormat::kLlama3Json;
    }
    return ToolCallFormat::kNone;
}

ToolCallFormat tool_call_format(std::string_view setting, std::string_view template_source) {
    if (setting == "hermes") return ToolCallFormat::kHermes;
    if (setting == "llama3_json") return ToolCallFormat::kLlama3Json;
    if (setting == "none") return ToolCallFormat::kNone;
    return tool_call_format_of_template(template_source);
}

ToolCallSplit split_tool_calls(ToolCallFormat format, std::string_view text) {
    ToolCallSplit split;
    const std::size_t start = call_start(format, text);
    if (start != std::string_view::npos) {
        const std::string_view calls_text = text.substr(start);
        auto calls = format == ToolCallFormat::kHermes ? parse_hermes_calls(calls_text)
                                                       : parse_llama3_calls(calls_text);
        if (calls) {
            split.content = trim_right(text.substr(0, start));
            split.calls = std::move(*calls);
            return split;
        }
    }
    split.content = text;
    return split;
}

std::string ToolCallStream::feed(std::string_view piece) {
    if (format_ == ToolCallFormat::kNone || content_only_) return std::string(piece);
    held_ += piece;
    if (in_calls_) return {};
    if (format_ == ToolCallFormat::kLlama3Json) {
        const std::size_t start = held_.find_first_not_of(kWhitespace);
        if (start == std::string::npos) return {};
        const std::string_view rest = std::string_view(held_).substr(start);
        if (call_start(format_, held_) != std::string::npos) {
            in_calls_ = true;  // held_ keeps the leading whitespace: content if no call parses
            return {};
        }
        if (rest.size() < kPythonTag.size() && kPythonTag.starts_with(rest)) return {};
        content_only_ = true;
        return std::exchange(held_, {});
    }
    // Hermes: content runs until <tool_call>; whitespace before it is not content.
    const std::size_t open = held_.find(kHermesOpen);
    if (open != std::string::npos) {
        const std::size_t content_end = trim_right(std::string_view(held_).substr(0, open)).size();
        std::string content = held_.substr(0, content_end);
        held_.erase(0, content_end);
        in_calls_ = true;
        return content;
    }
    const std::size_t hold = partial_tag_suffix(held_, kHermesOpen);
    const std::size_t content_end =
        trim_right(std::string_view(held_).substr(0, held_.size() - hold)).size();
    std::string content = held_.substr(0, content_end);
    held_.erase(0, content_end);
    return content;
}

ToolCallSplit ToolCallStream::finish() {
    if (in_calls_) return split_tool_calls(format_, std::exchange(held_, {}));
    return {std::exchange(held_, {}), {}};
}

std::string tool_call_gbnf(ToolCallFormat format, const OrderedJson& tools,
                           const std::optional<std::string>& only_function, bool parallel) {
    const char* arguments_key = format == ToolCallFormat::kHermes ? "arguments" : "parameters";
    std::vector<std::pair<std::string, OrderedJson>> callable;  // name, parameters
    for (std::size_t i = 0; i < tools.size(); ++i) {
        const OrderedJson& function = tools[i]["function"];
        const std::string name = function["name"].get<std::string>();
        if (only_function && name != *only_function) continue;
        OrderedJson parameters = parameters_of(function);
        check_parameters(parameters, i);
        callable.emplace_back(name, std::move(parameters));
    }
    if (callable.empty()) {
        throw Error(ErrorCode::kInvalidArgument, "'tool_choice' names no tool of 'tools'",
                    "tool_choice");
    }
    const auto call_schema = [&](const std::string& name, const OrderedJson& parameters,
                                 const std::string& at) {
        OrderedJson properties = OrderedJson::object();
        properties["name"] = {{"const", name}};
        properties[arguments_key] =
            with_refs_under(parameters, at + "/properties/" + arguments_key);
        return OrderedJson{{"type", "object"},
                           {"properties", std::move(properties)},
                           {"required", OrderedJson::array({"name", arguments_key})},
                           {"additionalProperties", false}};
    };
    OrderedJson schema;
    if (callable.size() == 1) {
        schema = call_schema(callable[0].first, callable[0].second, "");
    } else {
        OrderedJson branches = OrderedJson::array();
        for (std::size_t i = 0; i < callable.size(); ++i) {
            branches.push_back(
                call_schema(callable[i].first, callable[i].second, fmt::format("/anyOf/{}", i)));
        }
        schema = {{"anyOf", std::move(branches)}};
    }
    // The call object's grammar under its own rule name, wrapped in the format's markers.
    std::string object_rules = grammar::json_schema_to_gbnf(schema.dump());
    constexpr std::string_view kRoot = "root ::= ";
    if (!object_rules.starts_with(kRoot)) {
        throw Error(ErrorCode::kInternal, "the JSON Schema grammar does not start with its root");
    }
    object_rules.replace(0, kRoot.size(), "tool-call-object ::= ");
    std::string wrapper;
    if (format == ToolCallFormat::kHermes) {
        wrapper = parallel ? "root ::= tool-call (\"\\n\" tool-call)*\n" : "root ::= tool-call\n";
        wrapper += "tool-call ::= \"<tool_call>\\n\" tool-call-object \"\\n</tool_call>\"\n";
    } else {
        wrapper = parallel ? "root ::= tool-call-object (\";\" tool-call-object)*\n"
                           : "root ::= tool-call-object\n";
    }
    return wrapper + object_rules;
}

}  // namespace llmserve::server
