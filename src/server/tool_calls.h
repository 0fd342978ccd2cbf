// Tool calls on /v1/chat/completions: which format a model writes its calls in, the parser that
// turns a reply into OpenAI's message.tool_calls (whole or streamed), and the grammar that forces
// a reply to be a call (tool_choice "required" or a named function).
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::server {

// How a model writes calls:
//   kHermes     (Qwen 2.5/3, Hermes): <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>,
//               one block per call, possibly after some text;
//   kLlama3Json (Llama 3.1+): the whole reply is {"name": ..., "parameters": {...}}, optionally
//               after <|python_tag|>; several calls are separated by ';'.
enum class ToolCallFormat { kNone, kHermes, kLlama3Json };

// TOOL_CALL_PARSER's values: "auto" (from the chat template), "hermes", "llama3_json", "none".
// The format a chat template's text implies: it mentions <tool_call> -> hermes; <|python_tag|> or
// Llama 3's <|start_header_id|> -> llama3_json; otherwise none.
ToolCallFormat tool_call_format_of_template(std::string_view template_source);
// `setting` is a validated TOOL_CALL_PARSER value.
ToolCallFormat tool_call_format(std::string_view setting, std::string_view template_source);

struct ToolCall {
    std::string name;
    std::string arguments;  // JSON text, as OpenAI's function.arguments
};

struct ToolCallSplit {
    std::string content;  // the text before the first call, trailing whitespace removed; all of
                          // the reply when it has no calls
    std::vector<ToolCall> calls;
};

// Splits a whole reply. A reply that does not parse as calls (malformed JSON, a missing name,
// text after a call) is all content, with no calls; a last call cut short (the reply ended inside
// it) after complete ones is dropped.
ToolCallSplit split_tool_calls(ToolCallFormat format, std::string_view text);

// The same over a stream of text pieces: feed() returns the content that is final (text that
// may still begin a call is held back; once a call begins, the rest is held); finish() returns
// the calls, or the held text as content when it did not parse. Its results concatenate to
// split_tool_calls() of the whole text.
class ToolCallStream {
  public:
    explicit ToolCallStream(ToolCallFormat format = ToolCallFormat::kNone) : format_(format) {}
    std::string feed(std::string_view piece);
    ToolCallSplit finish();

  private:
    ToolCallFormat format_;
    std::string held_;
    bool in_calls_ = false;      // held_ starts at the first call
    bool content_only_ = false;  // no call can follow any more (llama3_json: the reply is text)
};

// tool_choice.
struct ToolChoice {
    enum class Mode { kNone, kAuto, kRequired, kFunction };
    Mode mode = Mode::kAuto;
    std::string function;  // kFunction: the tool's name

    bool forces_call() const { return mode == Mode::kRequired || mode == Mode::kFunction; }
};

// The GBNF grammar of a reply that is one call (several with `parallel`) in `format` to one of
// `tools` (validated OpenAI tool definitions; only `only_function` when given), its arguments
// valid for that tool's parameters schema (compact JSON). Throws Error(kInvalidArgument, param
// "tools[i].function.parameters") for a schema the grammar compiler cannot enforce.
std::string tool_call_gbnf(ToolCallFormat format, const nlohmann::ordered_json& tools,
                           const std::optional<std::string>& only_function, bool parallel);

}  // namespace llmserve::server
