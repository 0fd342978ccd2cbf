#include "server/chat_schema.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <iterator>
#include <set>

#include "common/error.h"
#include "server/constraint_fields.h"
#include "server/request_fields.h"

namespace llmserve::server {
namespace {

using namespace fields;

constexpr std::array<std::string_view, 5> kRoles = {"system", "developer", "user", "assistant",
                                                    "tool"};

// A content list's text parts joined into one string.
std::string text_of_parts(const Json& parts, const std::string& field) {
    std::string text;
    for (std::size_t j = 0; j < parts.size(); ++j) {
        const Json& part = parts[j];
        const std::string at = fmt::format("{}[{}]", field, j);
        if (!part.is_object()) {
            fail_malformed(field, "'{}' must be an object, got {}", at, describe(part));
        }
        const std::string type =
            part.contains("type") ? get_string(part["type"], at + ".type") : std::string();
        if (type != "text") {
            throw Error(ErrorCode::kUnsupported,
                        fmt::format("'{}.type' is '{}': only 'text' content parts are supported "
                                    "by this model",
                                    at, type.substr(0, 64)),
                        field);
        }
        if (!part.contains("text")) fail_malformed(field, "'{}.text' is required", at);
        if (j > 0) text += '\n';
        text += get_string(part["text"], at + ".text");
    }
    return text;
}

Json read_message(const Json& message, std::size_t i) {
    const std::string at = fmt::format("messages[{}]", i);
    if (!message.is_object()) {
        fail_malformed("messages", "'{}' must be an object, got {}", at, describe(message));
    }
    if (!given(message, "role")) fail_malformed("messages", "'{}.role' is required", at);
    const std::string role = get_string(message["role"], at + ".role");
    if (std::find(kRoles.begin(), kRoles.end(), role) == kRoles.end()) {
        fail_param("messages",
                   "'{}.role' must be one of system, developer, user, assistant, "
                   "tool; got '{}'",
                   at, role.substr(0, 64));
    }
    Json out = message;
    const Json content = message.value("content", Json(nullptr));
    if (content.is_array()) {
        out["content"] = text_of_parts(content, at + ".content");
    } else if (content.is_null()) {
        if (role != "assistant") {
            fail_malformed("messages", "'{}.content' is required for a {} message", at, role);
        }
        out["content"] = nullptr;
    } else if (!content.is_string()) {
        fail_malformed("messages", "'{}.content' must be a string or a list of parts, got {}", at,
                       describe(content));
    }
    if (given(message, "name")) get_string(message["name"], at + ".name");
    if (given(message, "tool_calls") && !message["tool_calls"].is_array()) {
        fail_malformed("messages", "'{}.tool_calls' must be a list, got {}", at,
                       describe(message["tool_calls"]));
    }
    return out;
}

// OpenAI's rule for function names (they are also written into the call grammar as literals).
bool valid_function_name(const std::string& name) {
    return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
}

void read_tool(const Json& tool, std::size_t i, std::set<std::string>& names) {
    const std::string at = fmt::format("tools[{}]", i);
    if (!tool.is_object()) fail_malformed(at, "'{}' must be an object, got {}", at, describe(tool));
    if (!given(tool, "type")) fail_malformed(at + ".type", "'{}.type' is required", at);
    const std::string type = get_string(tool["type"], at + ".type");
    if (type != "function") {
        fail_param(at + ".type", "'{}.type' must be 'function', got '{}'", at, type.substr(0, 64));
    }
    const std::string function_at = at + ".function";
    if (!given(tool, "function")) fail_malformed(function_at, "'{}' is required", function_at);
    const Json& function = tool["function"];
    if (!function.is_object()) {
        fail_malformed(function_at, "'{}' must be an object, got {}", function_at,
                       describe(function));
    }
    const std::string name_at = function_at + ".name";
    if (!given(function, "name")) fail_malformed(name_at, "'{}' is required", name_at);
    const std::string name = get_string(function["name"], name_at);
    if (!valid_function_name(name)) {
        fail_param(name_at, "'{}' must be 1 to 64 letters, digits, '_' or '-'; got '{}'", name_at,
                   name.substr(0, 80));
    }
    if (!names.insert(name).second) {
        fail_param(name_at, "'{}' repeats the function name '{}'", name_at, name);
    }
    if (given(function, "description")) {
        get_string(function["description"], function_at + ".description");
    }
    if (given(function, "parameters") && !function["parameters"].is_object()) {
        fail_malformed(function_at + ".parameters",
                       "'{}.parameters' must be a JSON Schema (an object), got {}", function_at,
                       describe(function["parameters"]));
    }
    if (given(function, "strict")) get_bool(function["strict"], function_at + ".strict");
}

// "none", "auto", "required" or {"type": "function", "function": {"name": ...}}.
ToolChoice read_tool_choice(const Json& value) {
    using Mode = ToolChoice::Mode;
    if (value.is_string()) {
        const std::string mode = value.get<std::string>();
        if (mode == "none") return {Mode::kNone, {}};
        if (mode == "auto") return {Mode::kAuto, {}};
        if (mode == "required") return {Mode::kRequired, {}};
        fail_param("tool_choice",
                   "'tool_choice' must be none, auto, required or {{\"type\": \"function\", "
                   "\"function\": {{\"name\": ...}}}}; got '{}'",
                   mode.substr(0, 64));
    }
    if (!value.is_object()) {
        fail_malformed("tool_choice", "'tool_choice' must be a string or an object, got {}",
                       describe(value));
    }
    if (!given(value, "type")) fail_malformed("tool_choice.type", "'tool_choice.type' is required");
    const std::string type = get_string(value["type"], "tool_choice.type");
    if (type != "function") {
        fail_param("tool_choice.type", "'tool_choice.type' must be 'function', got '{}'",
                   type.substr(0, 64));
    }
    if (!given(value, "function") || !value["function"].is_object() ||
        !given(value["function"], "name")) {
        fail_malformed("tool_choice.function",
                       "'tool_choice.function' must be an object with the function's 'name'");
    }
    return {Mode::kFunction, get_string(value["function"]["name"], "tool_choice.function.name")};
}

// tool_choice against the tools given and the other output constraints.
void check_tool_choice(const ChatInputs& chat, bool tool_choice_given,
                       const GenerationOptions& options) {
    const ToolChoice& choice = chat.tool_choice;
    if (!tool_choice_given) return;
    const bool have_tools = chat.tools.is_array() && !chat.tools.empty();
    if (choice.mode != ToolChoice::Mode::kNone && !have_tools) {
        fail_param("tool_choice", "'tool_choice' needs a non-empty 'tools' list");
    }
    if (choice.mode == ToolChoice::Mode::kFunction) {
        const bool known = std::any_of(chat.tools.begin(), chat.tools.end(), [&](const auto& tool) {
            return tool["function"]["name"] == choice.function;
        });
        if (!known) {
            fail_param("tool_choice.function.name",
                       "'tool_choice.function.name' is '{}', which is not a function of 'tools'",
                       choice.function.substr(0, 64));
        }
    }
    if (choice.forces_call() && options.constraint) {
        fail_param("tool_choice",
                   "'tool_choice' that forces a call cannot be combined with another output "
                   "constraint ({})",
                   options.constraint_field);
    }
}

}  // namespace

Json read_chat_messages(const Json& value) {
    if (!value.is_array()) {
        fail_malformed("messages", "'messages' must be a list of messages, got {}",
                       describe(value));
    }
    if (value.empty()) fail_param("messages", "'messages' must not be empty");
    Json messages = Json::array();
    for (std::size_t i = 0; i < value.size(); ++i) messages.push_back(read_message(value[i], i));
    return messages;
}

Json read_tools(const Json& value) {
    if (!value.is_array())
        fail_malformed("tools", "'tools' must be a list, got {}", describe(value));
    std::set<std::string> names;
    for (std::size_t i = 0; i < value.size(); ++i) read_tool(value[i], i, names);
    return value;
}

Json read_template_kwargs(const Json& value) {
    if (!value.is_object()) {
        fail_malformed("chat_template_kwargs", "'chat_template_kwargs' must be an object, got {}",
                       describe(value));
    }
    return value;
}

void keep_client_key_order(ChatInputs& chat, std::string_view body) {
    const auto ordered =
        nlohmann::ordered_json::parse(body);  // parsed (and validated) once already
    const nlohmann::ordered_json validated = std::move(chat.messages);
    chat.messages = ordered.at("messages");
    for (std::size_t i = 0; i < validated.size(); ++i)
        chat.messages[i]["content"] = validated[i]["content"];
    if (!chat.tools.is_null()) chat.tools = ordered.at("tools");
    if (ordered.contains("chat_template_kwargs"))
        chat.template_kwargs = ordered.at("chat_template_kwargs");
}

ApiRequest parse_chat_request(std::string_view body, const RequestLimits& limits) {
    const Json json = parse_body(body);
    ChatInputs chat;
    bool logprobs = false;
    std::optional<int> top_logprobs;
    std::vector<Field<ApiRequest>> fields = control_fields(limits);
    std::ranges::move(openai_constraint_fields(), std::back_inserter(fields));
    fields.push_back({"model", [&](const Json& v, ApiRequest&) { check_model(v, limits); }});
    fields.push_back(
        {"messages", [&](const Json& v, ApiRequest&) { chat.messages = read_chat_messages(v); }});
    for (const char* name : {"max_tokens", "max_completion_tokens"}) {
        fields.push_back({name, [&, name](const Json& v, ApiRequest& r) {
                              if (r.options.max_new_tokens_given) {
                                  fail_param(name,
                                             "give 'max_completion_tokens' or "
                                             "'max_tokens', not both");
                              }
                              r.options.stop.max_new_tokens =
                                  read_max_new_tokens(v, name, limits, r.options);
                          }});
    }
    fields.push_back({"min_tokens", [&](const Json& v, ApiRequest& r) {
                          r.options.stop.min_new_tokens =
                              static_cast<int>(get_integer(v, "min_tokens", 0, limits.n_positions));
                      }});
    fields.push_back({"n", [&](const Json& v, ApiRequest& r) {
                          r.options.n = static_cast<int>(get_integer(v, "n", 1, limits.max_n));
                      }});
    fields.push_back(
        {"logprobs", [&](const Json& v, ApiRequest&) { logprobs = get_bool(v, "logprobs"); }});
    fields.push_back({"top_logprobs", [&](const Json& v, ApiRequest&) {
                          top_logprobs = static_cast<int>(
                              get_integer(v, "top_logprobs", 0, engine::kMaxLogprobs));
                      }});
    fields.push_back({"stream_options", [&](const Json& v, ApiRequest& r) {
                          read_stream_options(v, r, !limits.strict_requests);
                      }});
    fields.push_back(
        {"user", [](const Json& v, ApiRequest& r) { r.user = get_string(v, "user"); }});
    fields.push_back({"tools", [&](const Json& v, ApiRequest&) { chat.tools = read_tools(v); }});
    fields.push_back({"tool_choice",
                      [&](const Json& v, ApiRequest&) { chat.tool_choice = read_tool_choice(v); }});
    fields.push_back({"parallel_tool_calls", [&](const Json& v, ApiRequest&) {
                          chat.parallel_tool_calls = get_bool(v, "parallel_tool_calls");
                      }});
    fields.push_back({"chat_template_kwargs", [&](const Json& v, ApiRequest&) {
                          chat.template_kwargs = read_template_kwargs(v);
                      }});
    fields.push_back({"add_generation_prompt", [&](const Json& v, ApiRequest&) {
                          chat.add_generation_prompt = get_bool(v, "add_generation_prompt");
                      }});
    fields.push_back({"continue_final_message", [&](const Json& v, ApiRequest&) {
                          chat.continue_final_message = get_bool(v, "continue_final_message");
                      }});

    ApiRequest request;
    request.options.max_new_tokens_field = "max_completion_tokens";
    apply_model_defaults(request.options, limits);
    read_fields(json, fields, request, !limits.strict_requests);
    if (!given(json, "messages")) fail_malformed("messages", "'messages' is required");
    keep_client_key_order(chat, body);
    if (!given(json, "tool_choice") && chat.tools.is_array() && !chat.tools.empty()) {
        chat.tool_choice = {ToolChoice::Mode::kAuto, {}};
    }
    check_tool_choice(chat, given(json, "tool_choice"), request.options);
    if (chat.continue_final_message) {
        // transformers refuses both; continuing a message means no new assistant header.
        if (given(json, "add_generation_prompt") && chat.add_generation_prompt) {
            fail_param("continue_final_message",
                       "'continue_final_message' and 'add_generation_prompt' cannot both be true");
        }
        chat.add_generation_prompt = false;
        if (chat.messages.back()["role"] != "assistant") {
            fail_param("continue_final_message",
                       "'continue_final_message' needs the last message to be the assistant's");
        }
    }
    if (top_logprobs && *top_logprobs > 0 && !logprobs) {
        fail_param("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    }
    if (logprobs) request.options.sampling.logprobs = top_logprobs.value_or(0);
    check_batch_size(1, request.options.n, "n", limits);
    finish_options(request.options, given(json, "temperature"), given(json, "top_p"), false, limits,
                   {{"max_new_tokens", request.options.max_new_tokens_field},
                    {"min_new_tokens", "min_tokens"}});
    request.chat = std::move(chat);
    return request;
}

}  // namespace llmserve::server
