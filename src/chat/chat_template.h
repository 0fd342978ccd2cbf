// A model's chat template, found and rendered as transformers' apply_chat_template does, by our
// own Jinja interpreter (sandboxed: no file or host access, bounded work and output).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "chat/limits.h"

namespace llmserve::chat {

struct ChatTemplateInputs {
    nlohmann::json messages = nlohmann::json::array();  // OpenAI-style messages, passed as given
    nlohmann::json tools = nullptr;                     // null or an array of tool definitions
    bool add_generation_prompt = true;
    nlohmann::json extra = nlohmann::json::object();  // chat_template_kwargs: extra variables
};

// ChatTemplateInputs with JSON that keeps the request's key order (parse the request body as
// nlohmann::ordered_json): `tojson` then writes objects such as tool schemas in the order the
// client sent them, as transformers does. nlohmann::json sorts keys, so with ChatTemplateInputs
// a template's `tojson` output has sorted keys.
struct OrderedChatTemplateInputs {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    nlohmann::ordered_json tools = nullptr;
    bool add_generation_prompt = true;
    nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

// Cheap to copy; render() may run concurrently on one instance.
class ChatTemplate {
  public:
    // Finds the model's template in transformers' order: `override_file` when non-empty (the
    // CHAT_TEMPLATE setting), else <dir>/chat_template.jinja, <dir>/chat_template.json,
    // tokenizer_config.json's chat_template (a string, or a list of {name, template}: "default",
    // or "tool_use" when tools are given). Also reads the special tokens of tokenizer_config.json
    // (bos_token, eos_token, unk_token, pad_token as strings or {"content": ...} objects;
    // additional_special_tokens). Returns nullopt when the model has no template. Throws
    // Error(kInvalidArgument) naming the file when one is malformed (parse errors with
    // line:column), Error(kNotFound) when `override_file` does not exist.
    static std::optional<ChatTemplate> load(const std::filesystem::path& model_dir,
                                            const std::filesystem::path& override_file = {});
    // From template text directly (tests, GGUF's tokenizer.chat_template); `special_tokens` like
    // tokenizer_config.json.
    static ChatTemplate from_source(std::string source,
                                    nlohmann::json special_tokens = nlohmann::json::object());

    // Renders as transformers' apply_chat_template does. Throws Error(kInvalidArgument) whose
    // message is the template's raise_exception text (prefixed "chat template: "), or names the
    // limit / the runtime error.
    std::string render(const ChatTemplateInputs& inputs) const;
    // The same with key order kept (see OrderedChatTemplateInputs).
    std::string render_ordered(const OrderedChatTemplateInputs& inputs) const;
    // continue_final_message: renders, then cuts the output right after the final message's
    // content (as transformers does: the rendered text up to and including the last occurrence
    // of that content, stripped). As in transformers, add_generation_prompt must be false.
    std::string render_continuation(const ChatTemplateInputs& inputs) const;
    std::string render_continuation_ordered(const OrderedChatTemplateInputs& inputs) const;
    bool has_template_for_tools() const;  // a separate tool_use template exists
    // The text of the template used when tools are given (the tool_use one, else the default):
    // how it writes tool calls tells the server how to read them.
    std::string_view source_for_tools() const;

    // A copy that renders under other limits (tests; stricter serving).
    ChatTemplate with_limits(const RenderLimits& limits) const;

    struct Impl;

  private:
    explicit ChatTemplate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<const Impl> impl_;
};

}  // namespace llmserve::chat
