// Tool calls end to end: the real binary serving the random-weight Llama chat fixture, whose
// template writes calls as <tool_call> blocks (hermes). A forced tool_choice must give calls that
// parse and whose arguments fit the tool's schema whatever the sampler draws.
#include <gtest/gtest.h>

#include <set>

#include "server_process.h"
#include "tests/common/scratch_dir.h"
#include "tests/server/chat_fixture.h"

namespace llmserve::server::testing {
namespace {

using Json = nlohmann::json;

// A fixture with room for the prompt and any call the grammar allows (values kept short).
constexpr int kMinContext = 256;

const Json kTools = Json::parse(R"([
  {"type": "function", "function": {"name": "weather", "description": "The weather.",
   "parameters": {"type": "object", "properties": {
     "city": {"enum": ["Paris", "Rome"]},
     "days": {"type": "integer", "minimum": 1, "maximum": 7},
     "note": {"type": "string", "maxLength": 3}},
     "required": ["city"], "additionalProperties": false}}},
  {"type": "function", "function": {"name": "ping"}}
])");
const Json kMessages = Json::array({{{"role", "user"}, {"content", "Weather?"}}});

// The arguments JSON of a call, checked against kTools' schemas.
void expect_valid_call(const Json& call) {
    ASSERT_TRUE(call.is_object()) << call;
    EXPECT_EQ(call["type"], "function");
    EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u) << call;
    const std::string name = call["function"]["name"];
    const Json arguments = Json::parse(call["function"]["arguments"].get<std::string>());
    ASSERT_TRUE(arguments.is_object()) << call;
    if (name == "ping") {
        EXPECT_EQ(arguments, Json::object()) << call;
        return;
    }
    ASSERT_EQ(name, "weather") << call;
    ASSERT_TRUE(arguments.contains("city")) << call;
    EXPECT_TRUE(arguments["city"] == "Paris" || arguments["city"] == "Rome") << call;
    for (const auto& [key, value] : arguments.items()) {
        if (key == "days") {
            ASSERT_TRUE(value.is_number_integer()) << call;
            EXPECT_GE(value.get<int>(), 1);
            EXPECT_LE(value.get<int>(), 7);
        } else if (key == "note") {
            ASSERT_TRUE(value.is_string()) << call;
            EXPECT_LE(value.get<std::string>().size(), 12u);  // 3 characters of up to 4 bytes
        } else {
            EXPECT_EQ(key, "city") << call;
        }
    }
}

class ToolCallsE2e : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!make_chat_model_dir(scratch_.path() / "model", kTestChatTemplate, kMinContext))
            GTEST_SKIP() << "no llama fixture";
        server_ = std::make_unique<ServerProcess>(
            Environment{{"MODEL_NAME", (scratch_.path() / "model").string()}});
        client_ = server_->client();
    }

    // A sampled chat request with the tools; every token left in the context may be used.
    Json request(const Json& extra) {
        Json body = {{"messages", kMessages}, {"tools", kTools}, {"temperature", 1.0}};
        for (const auto& [key, value] : extra.items()) body[key] = value;
        return body;
    }

    Json chat(const Json& body) {
        const auto result = post_json(*client_, "/v1/chat/completions", body);
        EXPECT_TRUE(result);
        if (!result) return Json();
        EXPECT_EQ(result->status, 200) << result->body;
        return Json::parse(result->body);
    }

    Json error(const Json& body) {
        const auto result = post_json(*client_, "/v1/chat/completions", body);
        EXPECT_TRUE(result);
        if (!result) return Json();
        EXPECT_EQ(result->status, 400) << result->body;
        return Json::parse(result->body).value("error", Json::object());
    }

    llmserve::testing::ScratchDir scratch_;
    std::unique_ptr<ServerProcess> server_;
    std::unique_ptr<httplib::Client> client_;
};

TEST_F(ToolCallsE2e, RequiredAlwaysGivesCallsThatFitTheSchemas) {
    std::set<std::string> names;
    for (int seed = 1; seed <= 8; ++seed) {
        const Json answer = chat(request({{"tool_choice", "required"},
                                          {"parallel_tool_calls", false},
                                          {"seed", seed},
                                          {"n", 2}}));
        ASSERT_EQ(answer["choices"].size(), 2u);
        for (const Json& choice : answer["choices"]) {
            SCOPED_TRACE(choice.dump());
            EXPECT_EQ(choice["finish_reason"], "tool_calls");
            EXPECT_EQ(choice["message"]["content"], nullptr);
            ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u);
            expect_valid_call(choice["message"]["tool_calls"][0]);
            names.insert(choice["message"]["tool_calls"][0]["function"]["name"].get<std::string>());
        }
    }
    EXPECT_EQ(names.size(), 2u) << "16 samples never chose one of the two tools";
}

// Parallel calls (the default): one or more, each complete and valid, even when the model keeps
// adding calls until the context runs out (the one cut short is dropped).
TEST_F(ToolCallsE2e, ParallelCallsAreAllValid) {
    for (int seed = 1; seed <= 12; ++seed) {
        const Json answer = chat(request({{"tool_choice", "required"}, {"seed", seed}}));
        const Json& choice = answer["choices"][0];
        SCOPED_TRACE(choice.dump());
        EXPECT_EQ(choice["finish_reason"], "tool_calls");
        ASSERT_GE(choice["message"]["tool_calls"].size(), 1u);
        for (const Json& call : choice["message"]["tool_calls"]) expect_valid_call(call);
    }
}

TEST_F(ToolCallsE2e, ANamedFunctionIsAlwaysTheOneCalled) {
    for (int seed = 1; seed <= 6; ++seed) {
        const Json answer = chat(
            request({{"tool_choice", {{"type", "function"}, {"function", {{"name", "weather"}}}}},
                     {"parallel_tool_calls", false},
                     {"seed", seed}}));
        const Json& choice = answer["choices"][0];
        SCOPED_TRACE(choice.dump());
        EXPECT_EQ(choice["finish_reason"], "tool_calls");
        ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u);
        EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["name"], "weather");
        expect_valid_call(choice["message"]["tool_calls"][0]);
    }
}

TEST_F(ToolCallsE2e, StreamedCallsAreTheSameCalls) {
    for (int seed = 3; seed <= 5; ++seed) {
        const Json body =
            request({{"tool_choice", "required"}, {"parallel_tool_calls", false}, {"seed", seed}});
        const Json whole = chat(body);
        Json streamed_body = body;
        streamed_body["stream"] = true;
        const auto result = post_json(*client_, "/v1/chat/completions", streamed_body);
        ASSERT_TRUE(result);
        const EventStream stream = parse_event_stream(result->body);
        ASSERT_TRUE(stream.done) << result->body;
        Json calls = Json::array();
        std::string content;
        Json finish_reason;
        for (const Json& event : stream.events) {
            const Json& choice = event["choices"][0];
            const Json& delta = choice["delta"];
            if (delta.contains("content")) content += delta["content"].get<std::string>();
            for (const Json& call : delta.value("tool_calls", Json::array())) {
                EXPECT_EQ(call["index"], calls.size()) << event;
                expect_valid_call(call);
                calls.push_back(call["function"]);
            }
            if (!choice["finish_reason"].is_null()) finish_reason = choice["finish_reason"];
        }
        EXPECT_EQ(content, "");
        EXPECT_EQ(finish_reason, "tool_calls");
        Json whole_calls = Json::array();
        for (const Json& call : whole["choices"][0]["message"]["tool_calls"]) {
            whole_calls.push_back(call["function"]);
        }
        EXPECT_EQ(calls, whole_calls);
    }
}

// A grammar makes the reply a call in the template's format: "auto" reads it as one, "none"
// leaves it as text.
TEST_F(ToolCallsE2e, AutoParsesACallAndNoneNeverDoes) {
    const std::string call_text =
        "Checking.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \"Rome\"}}\n"
        "</tool_call>";
    Json gbnf_literal = call_text;
    const Json forced = {{"grammar", "root ::= " + gbnf_literal.dump()}};
    const Json automatic = chat(request(forced));
    const Json& message = automatic["choices"][0]["message"];
    EXPECT_EQ(automatic["choices"][0]["finish_reason"], "tool_calls");
    EXPECT_EQ(message["content"], "Checking.");
    ASSERT_EQ(message["tool_calls"].size(), 1u);
    EXPECT_EQ(message["tool_calls"][0]["function"]["arguments"], R"({"city":"Rome"})");

    Json none = forced;
    none["tool_choice"] = "none";
    const Json plain = chat(request(none));
    EXPECT_EQ(plain["choices"][0]["message"]["content"], call_text);
    EXPECT_FALSE(plain["choices"][0]["message"].contains("tool_calls"));
    EXPECT_EQ(plain["choices"][0]["finish_reason"], "stop");

    // Unforced, "none" never yields calls either.
    for (int seed = 1; seed <= 3; ++seed) {
        const Json free = chat(request({{"tool_choice", "none"}, {"seed", seed}}));
        EXPECT_FALSE(free["choices"][0]["message"].contains("tool_calls")) << free;
        EXPECT_NE(free["choices"][0]["finish_reason"], "tool_calls");
    }

    // Streamed, the text before the call streams as content; the call comes whole.
    Json streamed = request(forced);
    streamed["stream"] = true;
    const auto result = post_json(*client_, "/v1/chat/completions", streamed);
    ASSERT_TRUE(result);
    const EventStream stream = parse_event_stream(result->body);
    std::string content;
    Json calls = Json::array();
    for (const Json& event : stream.events) {
        const Json& delta = event["choices"][0]["delta"];
        if (delta.contains("content")) content += delta["content"].get<std::string>();
        for (const Json& call : delta.value("tool_calls", Json::array())) calls.push_back(call);
    }
    EXPECT_EQ(content, "Checking.");
    ASSERT_EQ(calls.size(), 1u);
    EXPECT_EQ(calls[0]["function"]["name"], "weather");
}

TEST_F(ToolCallsE2e, AMalformedCallIsContent) {
    const std::string text = "<tool_call>\n{\"name\": \"weather\", \"arguments\": [}\n</tool_call>";
    Json gbnf_literal = text;
    const Json answer = chat(request({{"grammar", "root ::= " + gbnf_literal.dump()}}));
    EXPECT_EQ(answer["choices"][0]["message"]["content"], text);
    EXPECT_FALSE(answer["choices"][0]["message"].contains("tool_calls"));
    EXPECT_EQ(answer["choices"][0]["finish_reason"], "stop");
}

TEST_F(ToolCallsE2e, BadRequestsAre400NamingTheField) {
    EXPECT_EQ(
        error(request(
            {{"tool_choice", {{"type", "function"}, {"function", {{"name", "clock"}}}}}}))["param"],
        "tool_choice.function.name");
    Json tools = kTools;
    tools[1]["function"]["parameters"] = {
        {"type", "object"}, {"properties", {{"n", {{"type", "number"}, {"multipleOf", 2}}}}}};
    const Json keyword = error(request({{"tools", tools}, {"tool_choice", "required"}}));
    EXPECT_EQ(keyword["param"], "tools[1].function.parameters");
    EXPECT_NE(keyword["message"].get<std::string>().find("multipleOf"), std::string::npos)
        << keyword;
    tools[1]["function"]["name"] = "two words";
    EXPECT_EQ(error(request({{"tools", tools}}))["param"], "tools[1].function.name");
    EXPECT_EQ(error(request({{"tool_choice", "required"}, {"guided_choice", {"a", "b"}}}))["param"],
              "tool_choice");
}

// An assistant turn's calls with "arguments" as a JSON string are rendered as the template says
// (passed through as is, as transformers does), and the tool's answer follows.
TEST_F(ToolCallsE2e, ToolCallsAndToolMessagesReachTheTemplate) {
    const Json messages = Json::array(
        {{{"role", "user"}, {"content", "Weather?"}},
         {{"role", "assistant"},
          {"content", nullptr},
          {"tool_calls",
           {{{"id", "call_1"},
             {"type", "function"},
             {"function", {{"name", "weather"}, {"arguments", "{\"city\": \"Rome\"}"}}}}}}},
         {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "sunny"}}});
    const auto result =
        post_json(*client_, "/tokenize", {{"messages", messages}, {"tools", kTools}});
    ASSERT_TRUE(result);
    ASSERT_EQ(result->status, 200) << result->body;
    EXPECT_EQ(Json::parse(result->body)["prompt"],
              "<bos><|tools|> weather ping<pad><|user|>Weather?<pad><|assistant|><tool_call>\n"
              "{\"name\": \"weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call><pad>"
              "<|tool|>sunny<pad><|assistant|>");
}

TEST(ToolCallParserSetting, IsValidatedAndNoneTurnsCallsOff) {
    const auto [status, output] = run_llmserve({{"TOOL_CALL_PARSER", "mistral"}}, {"serve"});
    EXPECT_EQ(status, 2);
    EXPECT_NE(output.find("TOOL_CALL_PARSER"), std::string::npos) << output;

    llmserve::testing::ScratchDir scratch;
    if (!make_chat_model_dir(scratch.path() / "model", kTestChatTemplate, kMinContext))
        GTEST_SKIP() << "no llama fixture";
    ServerProcess server(
        {{"MODEL_NAME", (scratch.path() / "model").string()}, {"TOOL_CALL_PARSER", "none"}});
    auto client = server.client();
    const auto result =
        post_json(*client, "/v1/chat/completions",
                  {{"messages", kMessages}, {"tools", kTools}, {"tool_choice", "required"}});
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 400) << result->body;
    EXPECT_NE(result->body.find("TOOL_CALL_PARSER"), std::string::npos) << result->body;
}

TEST(ToolCallParserSetting, Llama3JsonOverridesTheTemplatesFormat) {
    llmserve::testing::ScratchDir scratch;
    if (!make_chat_model_dir(scratch.path() / "model", kTestChatTemplate, kMinContext)) {
        GTEST_SKIP() << "no llama fixture";
    }
    ServerProcess server(
        {{"MODEL_NAME", (scratch.path() / "model").string()}, {"TOOL_CALL_PARSER", "llama3_json"}});
    auto client = server.client();
    for (int seed = 1; seed <= 4; ++seed) {
        const auto result = post_json(*client, "/v1/chat/completions",
                                      {{"messages", kMessages},
                                       {"tools", kTools},
                                       {"tool_choice", "required"},
                                       {"parallel_tool_calls", false},
                                       {"temperature", 1.0},
                                       {"seed", seed}});
        ASSERT_TRUE(result);
        ASSERT_EQ(result->status, 200) << result->body;
        const Json choice = Json::parse(result->body)["choices"][0];
        SCOPED_TRACE(choice.dump());
        EXPECT_EQ(choice["finish_reason"], "tool_calls");
        ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u);
        expect_valid_call(choice["message"]["tool_calls"][0]);
    }
}

}  // namespace
}  // namespace llmserve::server::testing
