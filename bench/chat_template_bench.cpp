// Per-request cost of rendering a chat template: the three fixture families' real templates
// (tests/fixtures/tokenizers/<family>/tokenizer_config.json) on a typical 4-message conversation
// (system, user, assistant, user), as the chat endpoint renders once per request. Also the cost
// of loading (parsing) a template, paid once per model.
#include <benchmark/benchmark.h>

#include <string>

#include "chat/chat_template.h"

namespace llmserve::chat {
namespace {

std::filesystem::path family_dir(const std::string& family) {
    return std::filesystem::path(LLMSERVE_SOURCE_DIR) / "tests" / "fixtures" / "tokenizers" /
           family;
}

OrderedChatTemplateInputs conversation() {
    OrderedChatTemplateInputs inputs;
    inputs.messages = nlohmann::ordered_json::parse(R"([
        {"role": "system", "content": "You are a helpful assistant. Answer briefly and cite sources when you can."},
        {"role": "user", "content": "What is the capital of Australia, and why isn't it Sydney?"},
        {"role": "assistant", "content": "Canberra. It was chosen in 1908 as a compromise between Sydney and Melbourne, the two largest cities."},
        {"role": "user", "content": "When did Parliament first sit there?"}
    ])");
    return inputs;
}

void BM_Render(benchmark::State& state, const std::string& family) {
    const auto chat_template = ChatTemplate::load(family_dir(family));
    if (!chat_template) {
        state.SkipWithError("no chat template");
        return;
    }
    const OrderedChatTemplateInputs inputs = conversation();
    std::size_t bytes = 0;
    for (auto _ : state) {
        const std::string prompt = chat_template->render_ordered(inputs);
        bytes = prompt.size();
        benchmark::DoNotOptimize(prompt.data());
    }
    state.counters["prompt_bytes"] = static_cast<double>(bytes);
}

void BM_Load(benchmark::State& state, const std::string& family) {
    for (auto _ : state) {
        auto chat_template = ChatTemplate::load(family_dir(family));
        benchmark::DoNotOptimize(chat_template);
    }
}

BENCHMARK_CAPTURE(BM_Render, llama3, std::string("llama3"))->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Render, qwen3, std::string("qwen3"))->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Render, gemma3, std::string("gemma3"))->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Load, qwen3, std::string("qwen3"))->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace llmserve::chat
