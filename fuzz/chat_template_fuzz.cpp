// libFuzzer target for chat templates (seeded from fuzz/corpus/chat_template: the fixture
// families' real templates and language cases). For arbitrary template text:
//  - parsing fails, if at all, only with llmserve::Error;
//  - a template that parses renders a fixed conversation (with tools) or fails with
//    llmserve::Error, within the render limits (never a crash, hang, or unbounded output).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "chat/chat_template.h"
#include "common/error.h"

namespace {

llmserve::chat::OrderedChatTemplateInputs conversation() {
    llmserve::chat::OrderedChatTemplateInputs inputs;
    inputs.messages = nlohmann::ordered_json::parse(R"([
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "What's the weather in Paris? <think>x</think>"},
        {"role": "assistant", "content": null, "tool_calls": [{"type": "function",
         "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "user", "content": [{"type": "text", "text": "Thanks! 日本"}, {"type": "image"}]}
    ])");
    inputs.tools = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])");
    inputs.extra = {{"enable_thinking", false}};
    return inputs;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const llmserve::chat::OrderedChatTemplateInputs inputs = conversation();
    llmserve::chat::RenderLimits limits;
    limits.max_output_bytes = 1 << 16;
    limits.max_steps = 200'000;
    limits.max_allocated_bytes = 16 << 20;
    try {
        const auto chat_template =
            llmserve::chat::ChatTemplate::from_source(
                std::string(reinterpret_cast<const char*>(data), size), {{"bos_token", "<s>"}})
                .with_limits(limits);
        const std::string rendered = chat_template.render_ordered(inputs);
        if (rendered.size() > limits.max_output_bytes) std::abort();
    } catch (const llmserve::Error&) {
        // Refusing a malformed template, or one that raises or hits a limit, is expected.
    }
    return 0;
}
