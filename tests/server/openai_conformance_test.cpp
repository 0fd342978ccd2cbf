// Issue 14, item 5: the OpenAI routes as strict clients expect them, against the real binary
// serving the embedded model (GPT-2 shaped, no chat template). /generate keeps its own answers.
#include <gtest/gtest.h>

#include "server_process.h"

namespace llmserve::server::testing {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

Json error_of(const httplib::Result& result, int status) {
    EXPECT_TRUE(result);
    if (!result) return Json();
    EXPECT_EQ(result->status, status) << result->body;
    const Json body = Json::parse(result->body, nullptr, false);
    EXPECT_TRUE(body.contains("error")) << result->body;
    return body.value("error", Json::object());
}

TEST(OpenAiConformance, InvalidValuesAre400InvalidRequestErrorOnOpenAiRoutesOnly) {
    ServerProcess server;
    auto client = server.client();
    const std::vector<std::pair<std::string, Json>> invalid = {
        {"temperature", -2}, {"top_p", 0}, {"max_tokens", 100000}, {"n", 99}};
    for (const auto& [field, value] : invalid) {
        SCOPED_TRACE(field);
        const Json error =
            error_of(post_json(*client, "/v1/completions", {{"prompt", "x"}, {field, value}}), 400);
        EXPECT_EQ(error["type"], "invalid_request_error");
        EXPECT_EQ(error["param"], field);
    }
    // /generate keeps its documented 422 for the same kind of value.
    EXPECT_EQ(error_of(post_json(*client, "/generate", {{"prompt", "x"}, {"temperature", -2}}),
                       422)["param"],
              "temperature");
}

TEST(OpenAiConformance, UnknownModelIsModelNotFound) {
    ServerProcess server;
    const Json error = error_of(
        post_json(*server.client(), "/v1/completions", {{"prompt", "x"}, {"model", "gpt-9"}}), 404);
    EXPECT_EQ(error["code"], "model_not_found");
    EXPECT_EQ(error["param"], "model");
    EXPECT_NE(error["message"].get<std::string>().find("gpt-9"), std::string::npos);
}

TEST(OpenAiConformance, UnknownFieldsAreIgnoredUnlessStrictRequests) {
    const Json body = {{"prompt", "x"},
                       {"max_tokens", 2},
                       {"vendor_extra", {{"a", 1}}},
                       {"stream_options", nullptr}};
    {
        ServerProcess server;
        const auto answered = post_json(*server.client(), "/v1/completions", body);
        ASSERT_TRUE(answered);
        EXPECT_EQ(answered->status, 200) << answered->body;
        // /generate keeps refusing them.
        EXPECT_EQ(error_of(post_json(*server.client(), "/generate",
                                     {{"prompt", "x"}, {"vendor_extra", 1}}),
                           400)["param"],
                  "vendor_extra");
    }
    ServerProcess strict(Environment{{"STRICT_REQUESTS", "1"}});
    const Json error = error_of(post_json(*strict.client(), "/v1/completions", body), 400);
    EXPECT_EQ(error["param"], "vendor_extra");
    EXPECT_EQ(error["type"], "invalid_request_error");
}

TEST(OpenAiConformance, TimeoutFinishesWithLengthOnOpenAiRoutes) {
    ServerProcess server(Environment{{"REQUEST_TIMEOUT_S", "0.3"}});
    const Json request = {
        {"prompt", "The"}, {"max_tokens", 500}, {"ignore_eos", true}, {"temperature", 0}};
    const auto plain = post_json(*server.client(), "/v1/completions", request);
    ASSERT_TRUE(plain);
    const Json body = Json::parse(plain->body);
    EXPECT_EQ(body["choices"][0]["finish_reason"], "length") << plain->body;
    EXPECT_LT(body["usage"]["completion_tokens"].get<int>(), 500);

    Json stream_request = request;
    stream_request["stream"] = true;
    const auto streamed = post_json(*server.client(), "/v1/completions", stream_request);
    ASSERT_TRUE(streamed);
    const EventStream events = parse_event_stream(streamed->body);
    ASSERT_TRUE(events.done) << streamed->body;
    ASSERT_FALSE(events.events.empty());
    EXPECT_EQ(events.events.back()["choices"][0]["finish_reason"], "length");
}

TEST(OpenAiConformance, ChatWithoutATemplateIs400SayingHowToGiveOne) {
    ServerProcess server;
    auto client = server.client();
    const Json error =
        error_of(post_json(*client, "/v1/chat/completions",
                           {{"messages", Json::array({{{"role", "user"}, {"content", "hi"}}})}}),
                 400);
    EXPECT_EQ(error["type"], "invalid_request_error");
    EXPECT_NE(error["message"].get<std::string>().find("CHAT_TEMPLATE"), std::string::npos)
        << error.dump();
    const Json info = Json::parse(client->Get("/info")->body);
    EXPECT_EQ(info["model"]["chat_template"], false);
    // Messages are validated before the template is needed.
    const Json part = error_of(
        post_json(
            *client, "/v1/chat/completions",
            {{"messages", Json::array({{{"role", "user"},
                                        {"content", Json::array({{{"type", "image_url"}}})}}})}}),
        400);
    EXPECT_NE(part["message"].get<std::string>().find("image_url"), std::string::npos)
        << part.dump();
}

TEST(OpenAiConformance, NewSettingsAreValidatedAtStartup) {
    const auto [status, output] = run_llmserve({{"STRICT_REQUESTS", "maybe"}}, {"serve"});
    EXPECT_EQ(status, 2);
    EXPECT_NE(output.find("STRICT_REQUESTS"), std::string::npos) << output;
    const auto [template_status, template_output] =
        run_llmserve({{"CHAT_TEMPLATE", "/nonexistent/template.jinja"}}, {"serve"});
    EXPECT_EQ(template_status, 2);
    EXPECT_NE(template_output.find("CHAT_TEMPLATE"), std::string::npos) << template_output;
    const auto [parser_status, parser_output] =
        run_llmserve({{"REASONING_PARSER", "deepseek"}}, {"serve"});
    EXPECT_EQ(parser_status, 2);
    EXPECT_NE(parser_output.find("REASONING_PARSER"), std::string::npos) << parser_output;
}

}  // namespace
}  // namespace llmserve::server::testing
