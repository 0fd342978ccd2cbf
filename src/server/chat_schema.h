// The body of POST /v1/chat/completions (OpenAI's chat API plus the extensions of
// /v1/completions), and the chat pieces /tokenize shares.
#pragma once

#include <nlohmann/json.hpp>

#include "server/schemas.h"

namespace llmserve::server {

// `messages`: a non-empty list of {role, content, name?, tool_calls?, tool_call_id?}. Roles:
// system, developer, user, assistant, tool. Content: a string, null (an assistant message with
// tool_calls), or a list of {"type": "text", "text"} parts, joined with "\n" into one string
// (other part types are refused naming them). Other keys pass through to the template.
nlohmann::json read_chat_messages(const nlohmann::json& value);

// `tools`: OpenAI's [{"type": "function", "function": {"name", "description"?, "parameters"?,
// "strict"?}}], names unique and 1 to 64 of [A-Za-z0-9_-]; errors name the field
// ("tools[1].function.name").
nlohmann::json read_tools(const nlohmann::json& value);

// `chat_template_kwargs`: an object of extra template variables (Qwen3's enable_thinking).
nlohmann::json read_template_kwargs(const nlohmann::json& value);

// Replaces the validated (key-sorted) messages, tools and chat_template_kwargs of `chat` with the
// same values in the body's own key order, keeping the validated message contents (content parts
// joined into text).
void keep_client_key_order(ChatInputs& chat, std::string_view body);

}  // namespace llmserve::server
