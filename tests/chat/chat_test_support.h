// Shared by the chat template tests: where the fixtures are and how a fixture row becomes inputs.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "tests/common/test_paths.h"

namespace llmserve::chat::testing {

namespace fs = std::filesystem;

// One JSON value per non-empty line, keys in file order (the references' tojson output keeps
// it); an unreadable file or bad line fails the calling test.
inline std::vector<nlohmann::ordered_json> read_jsonl(const fs::path& path) {
    std::ifstream stream(path);
    EXPECT_TRUE(stream.is_open()) << "cannot open " << path;
    std::vector<nlohmann::ordered_json> rows;
    std::string line;
    while (std::getline(stream, line))
        if (!line.empty()) rows.push_back(nlohmann::ordered_json::parse(line));
    EXPECT_FALSE(rows.empty()) << path << " has no rows";
    return rows;
}

// Every chat/<family>.jsonl; the family's template is tokenizers/<family>/tokenizer_config.json.
inline std::vector<std::string> chat_families() {
    std::vector<std::string> names;
    const fs::path dir = llmserve::testing::fixtures_dir() / "chat";
    if (!fs::is_directory(dir)) return names;
    for (const auto& entry : fs::directory_iterator(dir))
        if (entry.path().extension() == ".jsonl") names.push_back(entry.path().stem().string());
    std::sort(names.begin(), names.end());
    return names;
}

inline fs::path family_dir(const std::string& family) {
    return llmserve::testing::fixtures_dir() / "tokenizers" / family;
}

// The row's variables as the server passes them: tools from `extra` also select a tool_use
// template, as transformers' `tools=` argument does.
inline OrderedChatTemplateInputs inputs_of(const nlohmann::ordered_json& row) {
    OrderedChatTemplateInputs inputs;
    inputs.messages = row.at("messages");
    inputs.add_generation_prompt = row.at("add_generation_prompt").get<bool>();
    inputs.extra = row.value("extra", nlohmann::ordered_json::object());
    if (inputs.extra.contains("tools")) inputs.tools = inputs.extra["tools"];
    return inputs;
}

// "TemplateError: text" (a raise_exception in the reference) -> "chat template: text".
inline std::string expected_raise_message(const nlohmann::ordered_json& row) {
    const std::string reference = row.value("error_message", "");
    const std::string prefix = "TemplateError: ";
    if (reference.rfind(prefix, 0) != 0) return {};
    return "chat template: " + reference.substr(prefix.size());
}

inline std::string describe(const nlohmann::ordered_json& row) {
    std::string text = row.dump(-1, ' ', true, nlohmann::ordered_json::error_handler_t::replace);
    if (text.size() > 300) text = text.substr(0, 297) + "...";
    return text;
}

}  // namespace llmserve::chat::testing
