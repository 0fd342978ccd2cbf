// Where a model's template comes from (transformers' order), its special tokens, named templates,
// malformed files, continue_final_message, and concurrent rendering.
#include <gtest/gtest.h>

#include <thread>

#include "chat/chat_template.h"
#include "chat_test_support.h"
#include "common/error.h"
#include "tests/common/expect_error.h"
#include "tests/common/scratch_dir.h"

namespace llmserve::chat {
namespace {

using llmserve::testing::expect_error;
using llmserve::testing::ScratchDir;

ChatTemplateInputs one_user_message(std::string text = "hi") {
    ChatTemplateInputs inputs;
    inputs.messages = nlohmann::json::array({{{"role", "user"}, {"content", std::move(text)}}});
    return inputs;
}

std::string config_with(const nlohmann::json& chat_template) {
    return nlohmann::json{{"bos_token", "<s>"},
                          {"eos_token", {{"content", "</s>"}, {"lstrip", false}}},
                          {"unk_token", nullptr},
                          {"additional_special_tokens", {"<a>", {{"content", "<b>"}}}},
                          {"chat_template", chat_template}}
        .dump();
}

TEST(ChatTemplateLoader, NoTemplateIsNullopt) {
    ScratchDir dir;
    EXPECT_FALSE(ChatTemplate::load(dir.path()).has_value());
    dir.write("tokenizer_config.json", R"({"bos_token": "<s>"})");
    EXPECT_FALSE(ChatTemplate::load(dir.path()).has_value());
    EXPECT_FALSE(ChatTemplate::load(llmserve::testing::embedded_model_dir()).has_value());
}

TEST(ChatTemplateLoader, SourcesInTransformersOrder) {
    ScratchDir dir;
    dir.write("tokenizer_config.json", config_with("config"));
    EXPECT_EQ(ChatTemplate::load(dir.path())->render({}), "config");
    dir.write("chat_template.json", R"({"chat_template": "json file"})");
    EXPECT_EQ(ChatTemplate::load(dir.path())->render({}), "json file");
    dir.write("chat_template.jinja", "jinja file");
    EXPECT_EQ(ChatTemplate::load(dir.path())->render({}), "jinja file");
    const auto override_file = dir.write("override.j2", "override");
    EXPECT_EQ(ChatTemplate::load(dir.path(), override_file)->render({}), "override");
    expect_error(ErrorCode::kNotFound,
                 [&] { ChatTemplate::load(dir.path(), dir.path() / "missing.j2"); });
}

TEST(ChatTemplateLoader, SpecialTokensAsStringsOrObjects) {
    ScratchDir dir;
    dir.write("tokenizer_config.json",
              config_with("{{ bos_token }}|{{ eos_token }}|{{ unk_token is defined }}|"
                          "{{ additional_special_tokens | join(',') }}"));
    EXPECT_EQ(ChatTemplate::load(dir.path())->render({}), "<s>|</s>|False|<a>,<b>");
}

TEST(ChatTemplateLoader, NamedTemplatesPickToolUseWhenToolsAreGiven) {
    ScratchDir dir;
    dir.write("tokenizer_config.json",
              config_with(nlohmann::json::array(
                  {{{"name", "default"}, {"template", "default {{ tools is none }}"}},
                   {{"name", "tool_use"}, {"template", "tools {{ tools | length }}"}}})));
    const auto chat_template = ChatTemplate::load(dir.path());
    ASSERT_TRUE(chat_template.has_value());
    EXPECT_TRUE(chat_template->has_template_for_tools());
    ChatTemplateInputs inputs = one_user_message();
    EXPECT_EQ(chat_template->render(inputs), "default True");
    inputs.tools = nlohmann::json::array({{{"type", "function"}}});
    EXPECT_EQ(chat_template->render(inputs), "tools 1");
    EXPECT_FALSE(ChatTemplate::from_source("x").has_template_for_tools());
}

TEST(ChatTemplateLoader, MalformedFilesNameTheFileAndPosition) {
    ScratchDir dir;
    dir.write("chat_template.jinja", "line one\n{% if x %}\n  {{ 1 + }}\n{% endif %}");
    const std::string message =
        expect_error(ErrorCode::kInvalidArgument, [&] { ChatTemplate::load(dir.path()); });
    EXPECT_NE(message.find("chat_template.jinja"), std::string::npos) << message;
    EXPECT_NE(message.find("line 3:"), std::string::npos) << message;

    ScratchDir json_dir;
    json_dir.write("tokenizer_config.json", "{not json");
    EXPECT_NE(
        expect_error(ErrorCode::kInvalidArgument, [&] { ChatTemplate::load(json_dir.path()); })
            .find("tokenizer_config.json"),
        std::string::npos);
    json_dir.write("tokenizer_config.json", R"({"chat_template": 5})");
    EXPECT_NE(
        expect_error(ErrorCode::kInvalidArgument, [&] { ChatTemplate::load(json_dir.path()); })
            .find("chat_template must be"),
        std::string::npos);
}

TEST(ChatTemplateRender, VariablesAsTransformersPassesThem) {
    const auto chat_template = ChatTemplate::from_source(
        "{{ messages | length }} {{ tools }} {{ documents }} {{ add_generation_prompt }} "
        "{{ enable_thinking }}");
    ChatTemplateInputs inputs = one_user_message();
    inputs.extra = {{"enable_thinking", false}};
    EXPECT_EQ(chat_template.render(inputs), "1 None None True False");
    inputs.extra = nlohmann::json::array();
    expect_error(ErrorCode::kInvalidArgument, [&] { chat_template.render(inputs); });
}

TEST(ChatTemplateRender, ContinuationCutsAfterTheFinalMessage) {
    const auto chat_template = ChatTemplate::from_source(
        "{% for m in messages %}<{{ m.role }}>{{ m.content | trim if m.content is string else "
        "m.content[0].text }}</{{ m.role }}>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}");
    ChatTemplateInputs inputs = one_user_message("Hello");
    inputs.messages.push_back({{"role", "assistant"}, {"content", "The answer is "}});
    inputs.add_generation_prompt = false;
    EXPECT_EQ(chat_template.render_continuation(inputs),
              "<user>Hello</user><assistant>The answer is");
    inputs.messages.back()["content"] =
        nlohmann::json::array({{{"type", "text"}, {"text", "Part one"}}, {{"type", "image"}}});
    EXPECT_EQ(chat_template.render_continuation(inputs), "<user>Hello</user><assistant>Part one");
    inputs.add_generation_prompt = true;
    expect_error(ErrorCode::kInvalidArgument, [&] { chat_template.render_continuation(inputs); });
    const auto keeps_spaces = ChatTemplate::from_source("{{ messages[-1].content }}<end>");
    ChatTemplateInputs spaced = one_user_message("ends with space ");
    spaced.add_generation_prompt = false;
    EXPECT_EQ(keeps_spaces.render_continuation(spaced), "ends with space ");
    const auto drops = ChatTemplate::from_source("{{ 'unrelated' }}");
    expect_error(ErrorCode::kInvalidArgument, [&] { drops.render_continuation(spaced); });
}

TEST(ChatTemplateRender, StrftimeNowFormatsTheCurrentTime) {
    const std::string year = ChatTemplate::from_source("{{ strftime_now('%Y') }}").render({});
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    EXPECT_EQ(std::stoi(year), local.tm_year + 1900);
}

TEST(ChatTemplateRender, ConcurrentRendersOfOneTemplateAgree) {
    const auto chat_template = ChatTemplate::load(testing::family_dir("qwen3"));
    ASSERT_TRUE(chat_template.has_value());
    ChatTemplateInputs inputs = one_user_message("Which is bigger, 9.11 or 9.9?");
    const std::string expected = chat_template->render(inputs);
    std::vector<std::thread> threads;
    std::vector<std::string> results(4);
    for (std::size_t t = 0; t < results.size(); ++t) {
        threads.emplace_back([&, t] {
            const ChatTemplate copy = *chat_template;
            for (int i = 0; i < 50; ++i) results[t] = copy.render(inputs);
        });
    }
    for (auto& thread : threads) thread.join();
    for (const std::string& result : results) EXPECT_EQ(result, expected);
}

}  // namespace
}  // namespace llmserve::chat
