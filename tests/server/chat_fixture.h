// A Llama-family model directory that has a chat template, for the chat tests: the files of a
// tests/fixtures/models-llama model, the tiny byte-level tokenizer (tests/common/tiny_tokenizer.h)
// and a tokenizer_config.json whose bos/eos tokens and chat template follow Llama 3's pattern
// (BOS, then per message a role header, the content and the end-of-turn token). The end-of-turn
// token is <pad> (id 0), deliberately not the model's EOS (id 2), as with Llama 3's <|eot_id|>.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/common/test_paths.h"
#include "tests/common/tiny_tokenizer.h"

namespace llmserve::server::testing {

// Tools, when given, are listed by name (the context is short); an assistant's tool calls are
// written as Qwen 2.5 writes them (<tool_call> blocks, "arguments" given as a JSON string passed
// through as is), which also tells the server to read calls in that (hermes) format.
inline constexpr const char* kTestChatTemplate =
    "{{- bos_token }}"
    "{%- if tools %}{{- '<|tools|>' }}"
    "{%- for tool in tools %}{{- ' ' + tool.function.name }}{%- endfor %}"
    "{{- eos_token }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' and not loop.first %}"
    "{{- raise_exception('the system message must come first') }}"
    "{%- endif %}"
    "{{- '<|' + message['role'] + '|>' + ((message['content'] or '') | trim) }}"
    "{%- for call in message.tool_calls or [] %}"
    "{{- '<tool_call>\\n{\"name\": \"' + call.function.name + '\", \"arguments\": ' }}"
    "{%- if call.function.arguments is string %}{{- call.function.arguments }}"
    "{%- else %}{{- call.function.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- eos_token }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>' }}{%- endif %}";

// The first models-llama fixture whose model_type is llama (with a context of at least
// `min_context` tokens), copied to `dir` with a tokenizer and the chat template. Returns false
// when there is none.
inline bool make_chat_model_dir(const std::filesystem::path& dir,
                                const std::string& chat_template = kTestChatTemplate,
                                int min_context = 0) {
    namespace fs = std::filesystem;
    for (const fs::path& fixture :
         llmserve::testing::subdirectories(llmserve::testing::fixtures_dir() / "models-llama")) {
        const auto config =
            nlohmann::json::parse(llmserve::testing::read_text(fixture / "config.json"));
        if (config.value("model_type", "") != "llama" ||
            config.value("max_position_embeddings", 0) < min_context ||
            fs::exists(fixture / "model.safetensors.index.json")) {
            continue;
        }
        llmserve::testing::copy_with_tiny_tokenizer(fixture, dir);
        std::ofstream(dir / "tokenizer_config.json") << nlohmann::json{
            {"bos_token", "<bos>"},
            {"eos_token", "<pad>"},
            {"chat_template", chat_template}}.dump(2);
        return true;
    }
    return false;
}

}  // namespace llmserve::server::testing
