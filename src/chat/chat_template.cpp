#include "chat/chat_template.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "chat/builtins.h"
#include "chat/interpreter.h"
#include "chat/parser.h"
#include "chat/text.h"
#include "common/error.h"

namespace llmserve::chat {

namespace fs = std::filesystem;

struct ChatTemplate::Impl {
    struct Program {
        std::string source;
        Body body;
    };
    std::shared_ptr<const Program> default_program;  // null: only named templates without default
    std::shared_ptr<const Program> tool_program;     // the "tool_use" template, if any
    Dict special_tokens;                             // bos_token, ..., additional_special_tokens
    RenderLimits limits;
};

namespace {

std::shared_ptr<const ChatTemplate::Impl::Program> compile(std::string source,
                                                           const std::string& origin) {
    auto program = std::make_shared<ChatTemplate::Impl::Program>();
    try {
        program->body = parse_template(source);
    } catch (const Error& error) {
        if (origin.empty()) throw;
        fail(ErrorCode::kInvalidArgument, "{}: {}", origin, error.what());
    }
    program->source = std::move(source);
    return program;
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(ErrorCode::kNotFound, "chat template file {} cannot be read", path.string());
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

nlohmann::json read_json(const fs::path& path) {
    nlohmann::json json = nlohmann::json::parse(read_file(path), nullptr, false);
    if (json.is_discarded())
        fail(ErrorCode::kInvalidArgument, "{} is not valid JSON", path.string());
    return json;
}

// A special token as tokenizer_config.json writes it: a string or an AddedToken object.
std::optional<std::string> token_text(const nlohmann::json& token) {
    if (token.is_string()) return token.get<std::string>();
    if (token.is_object() && token.contains("content") && token["content"].is_string())
        return token["content"].get<std::string>();
    return std::nullopt;
}

// transformers passes special_tokens_map: only the tokens that are set.
Dict special_tokens_of(const nlohmann::json& config) {
    Dict tokens;
    if (!config.is_object()) return tokens;
    for (const char* name : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                             "cls_token", "mask_token"}) {
        if (!config.contains(name)) continue;
        if (const auto text = token_text(config[name])) tokens.set(Value(name), Value(*text));
    }
    if (config.contains("additional_special_tokens") &&
        config["additional_special_tokens"].is_array() &&
        !config["additional_special_tokens"].empty()) {
        List extra;
        for (const auto& token : config["additional_special_tokens"])
            if (const auto text = token_text(token)) extra.emplace_back(*text);
        tokens.set(Value("additional_special_tokens"), Value(std::move(extra)));
    }
    return tokens;
}

// `chat_template` of tokenizer_config.json / chat_template.json: a string or named templates.
void read_templates(const nlohmann::json& value, const fs::path& origin, ChatTemplate::Impl& impl) {
    const std::string where = origin.string();
    if (value.is_string()) {
        impl.default_program = compile(value.get<std::string>(), where);
        return;
    }
    if (!value.is_array())
        fail(ErrorCode::kInvalidArgument,
             "{}: chat_template must be a string or a list of {{name, template}}", where);
    for (const auto& entry : value) {
        if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() ||
            !entry.contains("template") || !entry["template"].is_string())
            fail(ErrorCode::kInvalidArgument,
                 "{}: each chat_template entry must be {{\"name\": string, \"template\": string}}",
                 where);
        const std::string name = entry["name"].get<std::string>();
        const std::string origin_name = fmt::format("{} (template '{}')", where, name);
        if (name == "default") impl.default_program = compile(entry["template"], origin_name);
        if (name == "tool_use") impl.tool_program = compile(entry["template"], origin_name);
    }
}

}  // namespace

std::optional<ChatTemplate> ChatTemplate::load(const fs::path& model_dir,
                                               const fs::path& override_file) {
    auto impl = std::make_shared<Impl>();
    const fs::path config_path = model_dir / "tokenizer_config.json";
    nlohmann::json config;
    if (fs::exists(config_path)) {
        config = read_json(config_path);
        if (!config.is_object())
            fail(ErrorCode::kInvalidArgument, "{} is not a JSON object", config_path.string());
        impl->special_tokens = special_tokens_of(config);
    }
    if (!override_file.empty()) {
        impl->default_program = compile(read_file(override_file), override_file.string());
    } else if (fs::exists(model_dir / "chat_template.jinja")) {
        const fs::path path = model_dir / "chat_template.jinja";
        impl->default_program = compile(read_file(path), path.string());
    } else if (fs::exists(model_dir / "chat_template.json")) {
        const fs::path path = model_dir / "chat_template.json";
        const nlohmann::json json = read_json(path);
        if (!json.is_object() || !json.contains("chat_template"))
            fail(ErrorCode::kInvalidArgument, "{} has no \"chat_template\"", path.string());
        read_templates(json["chat_template"], path, *impl);
    } else if (config.is_object() && config.contains("chat_template") &&
               !config["chat_template"].is_null()) {
        read_templates(config["chat_template"], config_path, *impl);
    }
    if (!impl->default_program && !impl->tool_program) return std::nullopt;
    return ChatTemplate(std::move(impl));
}

ChatTemplate ChatTemplate::from_source(std::string source, nlohmann::json special_tokens) {
    auto impl = std::make_shared<Impl>();
    impl->default_program = compile(std::move(source), "");
    impl->special_tokens = special_tokens_of(special_tokens);
    return ChatTemplate(std::move(impl));
}

bool ChatTemplate::has_template_for_tools() const {
    return impl_->tool_program != nullptr;
}

std::string_view ChatTemplate::source_for_tools() const {
    const auto& program = impl_->tool_program ? impl_->tool_program : impl_->default_program;
    return program ? std::string_view(program->source) : std::string_view();
}

ChatTemplate ChatTemplate::with_limits(const RenderLimits& limits) const {
    auto impl = std::make_shared<Impl>(*impl_);
    impl->limits = limits;
    return ChatTemplate(std::move(impl));
}

namespace {

template <typename Inputs>
std::string render_inputs(const ChatTemplate::Impl& impl, const Inputs& inputs) {
    const ChatTemplate::Impl::Program* program = impl.default_program.get();
    if (!inputs.tools.is_null() && impl.tool_program) program = impl.tool_program.get();
    if (program == nullptr)
        fail(ErrorCode::kInvalidArgument,
             "chat template: the model has named chat templates but no 'default' one");
    if (!inputs.extra.is_object())
        fail_param("chat_template_kwargs", "chat_template_kwargs must be a JSON object");

    static const std::shared_ptr<Scope> globals = make_global_scope();
    auto variables = std::make_shared<Scope>();
    variables->parent = globals;
    auto& vars = variables->variables;
    vars["messages"] = from_json(inputs.messages);
    vars["tools"] = from_json(inputs.tools);
    vars["documents"] = None{};
    vars["add_generation_prompt"] = inputs.add_generation_prompt;
    for (const auto& [name, token] : impl.special_tokens.items) vars[name.as_string()] = token;
    for (const auto& [name, value] : inputs.extra.items()) vars[name] = from_json(value);

    Interpreter interpreter(impl.limits, std::move(variables));
    return interpreter.render(program->body);
}

template <typename Inputs>
std::string render_continuation_of(const ChatTemplate::Impl& impl, const Inputs& inputs) {
    if (inputs.add_generation_prompt)
        fail_param("add_generation_prompt",
                   "continue_final_message and add_generation_prompt cannot both be true");
    if (!inputs.messages.is_array() || inputs.messages.empty())
        fail_param("messages", "continue_final_message needs at least one message");
    const auto& last = inputs.messages.back();
    std::optional<std::string> final_text;
    if (last.is_object() && last.contains("content")) {
        const auto& content = last["content"];
        if (content.is_string()) {
            final_text = content.template get<std::string>();
        } else if (content.is_array()) {
            for (auto it = content.rbegin(); it != content.rend(); ++it) {
                if (it->is_object() && it->contains("text") && (*it)["text"].is_string()) {
                    final_text = (*it)["text"].template get<std::string>();
                    break;
                }
            }
        }
    }
    if (!final_text)
        fail_param("messages",
                   "continue_final_message: the final message has no text content to continue");
    const std::string rendered = render_inputs(impl, inputs);
    const std::string stripped = text::strip(*final_text, std::nullopt, true, true);
    const std::size_t at = rendered.rfind(stripped);
    if (at == std::string::npos)
        fail_param("messages",
                   "continue_final_message: the final message does not appear in the rendered "
                   "chat (the template changes it)");
    // Keep the message's own trailing whitespace when the template kept it.
    const std::string kept = rendered.substr(at, final_text->size());
    if (text::strip(kept, std::nullopt, true, false) == *final_text)
        return rendered.substr(0, at + final_text->size());
    return rendered.substr(0, at + stripped.size());
}

}  // namespace

std::string ChatTemplate::render(const ChatTemplateInputs& inputs) const {
    return render_inputs(*impl_, inputs);
}

std::string ChatTemplate::render_ordered(const OrderedChatTemplateInputs& inputs) const {
    return render_inputs(*impl_, inputs);
}

std::string ChatTemplate::render_continuation(const ChatTemplateInputs& inputs) const {
    return render_continuation_of(*impl_, inputs);
}

std::string ChatTemplate::render_continuation_ordered(
    const OrderedChatTemplateInputs& inputs) const {
    return render_continuation_of(*impl_, inputs);
}

}  // namespace llmserve::chat
