// /v1/chat/completions bodies parsed into the one ApiRequest, and REASONING_PARSER=think's split.
#include <gtest/gtest.h>

#include "server/chat_schema.h"
#include "server/errors.h"
#include "server/reasoning.h"

namespace llmserve::server {
namespace {

using Json = nlohmann::json;

RequestLimits limits() {
    RequestLimits l;
    l.model_name = "tiny";
    l.vocab_size = 1000;
    l.n_positions = 64;
    l.default_max_new_tokens = 20;
    return l;
}

ApiRequest parse(const Json& body, const RequestLimits& l = limits()) {
    return parse_chat_request(body.dump(), l);
}

const Json kMessages = Json::array({{{"role", "user"}, {"content", "hi"}}});

TEST(ChatSchema, TheTemplateSeesTheClientsKeyOrder) {
    // transformers' tojson writes a tool schema in the order the client sent it; a sorted JSON
    // object would not.
    const std::string body =
        R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
        {"type": "text", "text": "b"}], "name": "zed"}],
      "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
        "properties": {"z": {"type": "string"}, "a": {"type": "integer"}}}, "description": "d"}}],
      "chat_template_kwargs": {"zeta": 1, "alpha": 2}})";
    const ApiRequest r = parse_chat_request(body, limits());
    ASSERT_TRUE(r.chat);
    EXPECT_EQ(
        r.chat->tools.dump(),
        R"([{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":)"
        R"({"z":{"type":"string"},"a":{"type":"integer"}}},"description":"d"}}])");
    EXPECT_EQ(r.chat->template_kwargs.dump(), R"({"zeta":1,"alpha":2})");
    // The message keeps its key order; its content parts are joined as validated.
    EXPECT_EQ(r.chat->messages.dump(), R"([{"role":"user","content":"a\nb","name":"zed"}])");
}

TEST(ChatSchema, FieldsLandInTheOneRequest) {
    const ApiRequest r = parse({{"messages", kMessages},
                                {"model", "tiny"},
                                {"max_completion_tokens", 7},
                                {"temperature", 0},
                                {"n", 2},
                                {"stop", "\n"},
                                {"seed", 5},
                                {"logprobs", true},
                                {"top_logprobs", 3},
                                {"top_k", 4},
                                {"stream", true},
                                {"stream_options", {{"include_usage", true}}},
                                {"user", "u"},
                                {"chat_template_kwargs", {{"enable_thinking", false}}}});
    EXPECT_EQ(r.options.stop.max_new_tokens, 7);
    EXPECT_TRUE(r.options.max_new_tokens_given);
    EXPECT_EQ(r.options.n, 2);
    EXPECT_EQ(r.options.sampling.logprobs, 3);
    EXPECT_EQ(r.options.sampling.top_k, 4);
    EXPECT_EQ(r.options.sampling.seed, 5u);
    EXPECT_EQ(r.options.stop.stop, std::vector<std::string>{"\n"});
    EXPECT_TRUE(r.stream);
    EXPECT_TRUE(r.include_usage);
    EXPECT_EQ(r.user, "u");
    ASSERT_TRUE(r.chat);
    EXPECT_EQ(r.chat->messages.dump(), kMessages.dump());
    EXPECT_EQ(r.chat->template_kwargs.dump(), Json({{"enable_thinking", false}}).dump());
    EXPECT_TRUE(r.chat->add_generation_prompt);
    // Defaults from the limits, as the other APIs get them.
    const ApiRequest minimal = parse({{"messages", kMessages}});
    EXPECT_EQ(minimal.options.stop.max_new_tokens, 20);
    EXPECT_FALSE(minimal.options.sampling.logprobs);
    EXPECT_EQ(parse({{"messages", kMessages}, {"logprobs", true}}).options.sampling.logprobs, 0);
}

TEST(ChatSchema, MessagesAreCheckedAndTextPartsJoined) {
    const Json parts = Json::array({{{"role", "user"},
                                     {"name", "ann"},
                                     {"content", Json::array({{{"type", "text"}, {"text", "a"}},
                                                              {{"type", "text"}, {"text", "b"}}})}},
                                    {{"role", "assistant"},
                                     {"content", nullptr},
                                     {"tool_calls", Json::array({{{"id", "1"}}})}},
                                    {{"role", "tool"}, {"content", "42"}, {"tool_call_id", "1"}}});
    const Json messages = Json::parse(parse({{"messages", parts}}).chat->messages.dump());
    EXPECT_EQ(messages[0]["content"], "a\nb");
    EXPECT_EQ(messages[0]["name"], "ann");
    EXPECT_EQ(messages[1]["tool_calls"][0]["id"], "1");
    EXPECT_EQ(messages[2]["tool_call_id"], "1");

    const auto refused = [](const Json& body) -> std::string {
        try {
            parse(body);
        } catch (const Error& e) {
            return std::string(e.what()) + " [" + e.param() + "]";
        }
        return "accepted";
    };
    const std::string image = refused(
        {{"messages",
          Json::array({{{"role", "user"}, {"content", Json::array({{{"type", "image_url"}}})}}})}});
    EXPECT_NE(image.find("image_url"), std::string::npos) << image;
    EXPECT_NE(
        refused({{"messages", Json::array({{{"role", "robot"}, {"content", "x"}}})}}).find("robot"),
        std::string::npos);
    EXPECT_NE(refused(Json::object()).find("'messages' is required"), std::string::npos);
    EXPECT_NE(refused({{"messages", kMessages}, {"max_tokens", 2}, {"max_completion_tokens", 2}})
                  .find("not both"),
              std::string::npos);
    EXPECT_NE(refused({{"messages", kMessages}, {"max_completion_tokens", 99}})
                  .find("[max_completion_tokens]"),
              std::string::npos);
    EXPECT_NE(refused({{"messages", kMessages}, {"model", "gpt-9"}}).find("gpt-9"),
              std::string::npos);
}

TEST(ChatSchema, UnknownFieldsIgnoredUnlessStrict) {
    const Json body = {{"messages", kMessages}, {"safe_prompt", true}};
    EXPECT_NO_THROW(parse(body));
    RequestLimits strict = limits();
    strict.strict_requests = true;
    try {
        parse(body, strict);
        FAIL() << "accepted";
    } catch (const MalformedRequest& e) {
        EXPECT_EQ(e.param(), "safe_prompt");
    }
}

TEST(ChatSchema, ContinueFinalMessageNeedsAnAssistantMessageLast) {
    const Json partial = Json::array(
        {{{"role", "user"}, {"content", "hi"}}, {{"role", "assistant"}, {"content", "Su"}}});
    const ApiRequest r = parse({{"messages", partial}, {"continue_final_message", true}});
    EXPECT_TRUE(r.chat->continue_final_message);
    EXPECT_FALSE(r.chat->add_generation_prompt);
    EXPECT_THROW(parse({{"messages", kMessages}, {"continue_final_message", true}}), Error);
    EXPECT_THROW(parse({{"messages", partial},
                        {"continue_final_message", true},
                        {"add_generation_prompt", true}}),
                 Error);
}

TEST(Reasoning, LeadingThinkBlockIsSplitOff) {
    const ReasoningSplit split = split_reasoning("<think>plan it</think>\n\nThe answer.");
    EXPECT_TRUE(split.has_reasoning);
    EXPECT_EQ(split.reasoning, "plan it");
    EXPECT_EQ(split.content, "The answer.");
    EXPECT_EQ(split_reasoning("<think>cut short").reasoning, "cut short");
    EXPECT_EQ(split_reasoning("<think>cut short").content, "");
    const ReasoningSplit none = split_reasoning("no <think>here</think>");
    EXPECT_FALSE(none.has_reasoning);
    EXPECT_EQ(none.content, "no <think>here</think>");
}

TEST(Reasoning, StreamAgreesWithTheWholeSplitAtEveryCut) {
    for (const std::string text : {"<think>a</think>\nb c", "<thi", "<think>x</thin", "plain",
                                   "<think></think>", "<think>r</think>\n\n<think>c"}) {
        const ReasoningSplit whole = split_reasoning(text);
        for (std::size_t cut = 0; cut <= text.size(); ++cut) {
            for (std::size_t cut2 = cut; cut2 <= text.size(); ++cut2) {
                ReasoningStream stream;
                std::string reasoning, content;
                for (const std::string_view piece : {std::string_view(text).substr(0, cut),
                                                     std::string_view(text).substr(cut, cut2 - cut),
                                                     std::string_view(text).substr(cut2)}) {
                    const ReasoningSplit part = stream.feed(piece);
                    reasoning += part.reasoning;
                    content += part.content;
                }
                const ReasoningSplit rest = stream.finish();
                reasoning += rest.reasoning;
                content += rest.content;
                EXPECT_EQ(reasoning, whole.reasoning) << text << " cut " << cut << "," << cut2;
                EXPECT_EQ(content, whole.content) << text << " cut " << cut << "," << cut2;
            }
        }
    }
}

}  // namespace
}  // namespace llmserve::server
