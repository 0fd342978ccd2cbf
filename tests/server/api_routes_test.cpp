// The three API adapters driven without a socket: a route function gets an ApiCall and returns an
// ApiResponse (a body, or a stream written into a string here). Expected texts come from the
// engine itself, run directly on the same prompt ids.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <sstream>

#include "backend/backend.h"
#include "engine/engine.h"
#include "model/model.h"
#include "server/api_routes.h"
#include "server/errors.h"
#include "server/generation_path.h"
#include "tests/common/scratch_dir.h"
#include "tests/common/test_paths.h"
#include "tests/server/chat_fixture.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace llmserve::server::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// A ServingState over a model directory, as `llmserve serve` builds it.
class Served {
  public:
    explicit Served(const fs::path& dir, ServerConfig config = {})
        : config_(std::move(config)),
          logger_(LogLevel::kError, LogFormat::kJson, log_),
          state_(config_, metrics_, logger_) {
        auto tokenizer =
            std::make_shared<const tokenizer::Tokenizer>(tokenizer::Tokenizer::from_directory(dir));
        engine_ = std::make_shared<engine::Engine>(
            model::Model::load(dir, {backend::make_cpu_backend(1), backend::WeightFormat::kAuto}),
            tokenizer, engine::EngineOptions{});
        state_.attach(LoadedModel{engine_, chat::ChatTemplate::load(dir)}, 0.0);
    }
    ServingState& state() { return state_; }
    engine::Engine& engine() { return *engine_; }

    // The engine's own greedy text for `ids`, stopping where the chat route stops.
    std::string greedy_text(const std::vector<engine::TokenId>& ids, int max_new_tokens,
                            std::vector<engine::TokenId> stop_ids = {}) {
        engine::GenerationRequest request;
        request.prompt = ids;
        request.sampling.temperature = 0.0f;
        request.stop.max_new_tokens = max_new_tokens;
        request.stop.stop_token_ids = std::move(stop_ids);
        return engine_->submit(request)->wait().sequences.at(0).text;
    }

  private:
    ServerConfig config_;
    std::ostringstream log_;
    Logger logger_;
    MetricsRegistry metrics_;
    ServingState state_;
    std::shared_ptr<engine::Engine> engine_;
};

ApiCall call_with(const Json& body) {
    ApiCall call;
    call.body = body.dump();
    return call;
}

// The JSON payloads of a streamed answer, and whether it ended with [DONE].
struct Stream {
    std::vector<Json> events;
    bool done = false;
};
Stream run_stream(const ApiResponse& response) {
    EXPECT_TRUE(response.stream);
    EXPECT_EQ(response.content_type, "text/event-stream");
    std::string bytes;
    response.stream([&](std::string_view piece) {
        bytes += piece;
        return true;
    });
    if (response.on_close) response.on_close();
    Stream stream;
    std::istringstream lines(bytes);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind("data: ", 0) != 0) continue;
        const std::string data = line.substr(6);
        EXPECT_FALSE(stream.done) << "an event after [DONE]";
        if (data == "[DONE]") {
            stream.done = true;
        } else {
            stream.events.push_back(Json::parse(data));
        }
    }
    return stream;
}

// --- /generate and /v1/completions on the embedded model ---------------------------------------

TEST(ApiRoutes, GenerateAndCompletionsAnswerTheEnginesText) {
    Served served(llmserve::testing::embedded_model_dir());
    const std::string prompt = "The jury said";
    const auto ids = served.engine().tokenizer().encode(prompt);
    const std::string expected = served.greedy_text(ids, 12);

    const ApiResponse generated = generate_route(
        served.state(), call_with({{"prompt", prompt}, {"max_length", 12}, {"do_sample", false}}));
    EXPECT_EQ(generated.status, 200);
    EXPECT_EQ(Json::parse(generated.body)["results"][0]["text"], expected);

    const Json completion = {{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}};
    const Json whole = Json::parse(completions_route(served.state(), call_with(completion)).body);
    EXPECT_EQ(whole["object"], "text_completion");
    EXPECT_EQ(whole["choices"][0]["text"], expected);

    Json streamed_request = completion;
    streamed_request["stream"] = true;
    streamed_request["stream_options"] = {{"include_usage", true}};
    const Stream stream =
        run_stream(completions_route(served.state(), call_with(streamed_request)));
    ASSERT_TRUE(stream.done);
    std::string text;
    for (const Json& event : stream.events) {
        if (!event["choices"].empty()) text += event["choices"][0]["text"].get<std::string>();
    }
    EXPECT_EQ(text, expected);
    EXPECT_EQ(stream.events.back()["usage"], whole["usage"]);
}

TEST(ApiRoutes, ErrorsFollowTheRoutesStyle) {
    Served served(llmserve::testing::embedded_model_dir());
    const Json bad = {{"prompt", "x"}, {"temperature", -1}};
    const auto status_of = [&](auto route, ErrorStyle style) {
        try {
            route(served.state(), call_with(bad));
        } catch (...) {
            return api_error_from(std::current_exception(), style).status;
        }
        return 200;
    };
    EXPECT_EQ(status_of(generate_route, ErrorStyle::kNative), 422);
    EXPECT_EQ(status_of(completions_route, ErrorStyle::kOpenAi), 400);
}

// Structured output through each API's fields: sampled at temperature 1 from the embedded model,
// the text is still one of the choices / a JSON value of the schema; a bad schema, regex or a
// second constraint is refused naming the field, with each route's status.
TEST(ApiRoutes, StructuredOutputFieldsConstrainTheText) {
    Served served(llmserve::testing::embedded_model_dir());
    const std::vector<std::string> choices = {"yes", "no", "maybe later"};
    const Json choice_text =
        Json::parse(completions_route(served.state(), call_with({{"prompt", "The answer is"},
                                                                 {"max_tokens", 8},
                                                                 {"temperature", 1},
                                                                 {"seed", 3},
                                                                 {"n", 3},
                                                                 {"guided_choice", choices}}))
                        .body);
    for (const Json& choice : choice_text["choices"]) {
        EXPECT_NE(std::find(choices.begin(), choices.end(), choice["text"].get<std::string>()),
                  choices.end())
            << choice["text"];
    }
    const Json schema = {
        {"type", "object"},
        {"properties", {{"n", {{"type", "integer"}}}, {"ok", {{"type", "boolean"}}}}},
        {"required", {"n", "ok"}},
        {"additionalProperties", false}};
    const Json generated =
        Json::parse(generate_route(served.state(), call_with({{"prompt", "JSON:"},
                                                              {"max_length", 40},
                                                              {"temperature", 1},
                                                              {"seed", 7},
                                                              {"json_schema", schema}}))
                        .body);
    const Json value = Json::parse(generated["results"][0]["text"].get<std::string>());
    EXPECT_TRUE(value["n"].is_number_integer()) << value;
    EXPECT_TRUE(value["ok"].is_boolean()) << value;
    EXPECT_EQ(value.size(), 2u) << value;
    const Json formatted = Json::parse(
        completions_route(served.state(),
                          call_with({{"prompt", "JSON:"},
                                     {"max_tokens", 40},
                                     {"seed", 9},
                                     {"response_format",
                                      {{"type", "json_schema"},
                                       {"json_schema", {{"name", "x"}, {"schema", schema}}}}}}))
            .body);
    EXPECT_TRUE(Json::parse(formatted["choices"][0]["text"].get<std::string>())["ok"].is_boolean());

    const auto refusal = [&](auto route, ErrorStyle style, const Json& body) {
        try {
            route(served.state(), call_with(body));
        } catch (...) {
            const auto error = api_error_from(std::current_exception(), style);
            return std::to_string(error.status) + " " + error.message;
        }
        return std::string("accepted");
    };
    const std::string bad_regex =
        refusal(generate_route, ErrorStyle::kNative, {{"prompt", "x"}, {"regex", "(ab"}});
    EXPECT_EQ(bad_regex.rfind("422 ", 0), 0u) << bad_regex;
    const std::string bad_schema =
        refusal(completions_route, ErrorStyle::kOpenAi,
                {{"prompt", "x"}, {"json_schema", {{"type", "object"}, {"not", {}}}}});
    EXPECT_EQ(bad_schema.rfind("400 ", 0), 0u) << bad_schema;
    EXPECT_NE(bad_schema.find("not"), std::string::npos) << bad_schema;
    const std::string two =
        refusal(completions_route, ErrorStyle::kOpenAi,
                {{"prompt", "x"}, {"guided_regex", "a+"}, {"guided_choice", {"a"}}});
    EXPECT_EQ(two.rfind("400 ", 0), 0u) << two;
    EXPECT_NE(two.find("cannot be combined"), std::string::npos) << two;
}

// A formatter whose stream fails after its first event, as any failure mid-stream would.
class FailingFormatter : public ApiFormatter {
  public:
    Json response(const ResponseContext&, const std::vector<engine::RequestResult>&) override {
        return Json::object();
    }
    std::vector<Json> stream_start(const ResponseContext&) override {
        return {{{"started", true}}};
    }
    std::vector<Json> stream_delta(const ResponseContext&, int, std::size_t, const std::string&,
                                   const std::vector<engine::GeneratedToken>&,
                                   std::size_t) override {
        throw Error(ErrorCode::kInternal, "the formatter broke");
    }
    std::vector<Json> stream_finish(const ResponseContext&, int, const engine::SequenceResult&,
                                    const std::string&) override {
        return {};
    }
    std::vector<Json> stream_end(const ResponseContext&,
                                 const std::vector<engine::RequestResult>&) override {
        return {};
    }
};

TEST(ApiRoutes, AFailureAfterTheStreamStartedIsALastErrorEvent) {
    Served served(llmserve::testing::embedded_model_dir());
    ApiRequest request;
    request.prompts = {Prompt{"The jury said", {}, false}};
    request.options.stop.max_new_tokens = 8;
    request.options.sampling.temperature = 0.0f;
    request.stream = true;
    const ApiCall call = call_with(Json::object());
    const Stream stream =
        run_stream(run_generation(served.state(), served.state().require_model(), call, request,
                                  std::make_shared<FailingFormatter>()));
    ASSERT_EQ(stream.events.size(), 2u);
    EXPECT_EQ(stream.events[0]["started"], true);
    EXPECT_EQ(stream.events[1]["error"]["type"], "server_error");
    EXPECT_NE(stream.events[1]["error"]["message"].get<std::string>().find("the formatter broke"),
              std::string::npos);
    EXPECT_TRUE(stream.done);
    EXPECT_EQ(served.state().running_jobs(), 0u);  // the generation was cancelled and released
}

TEST(ApiRoutes, ChatWithoutATemplateSaysHowToGiveOne) {
    Served served(llmserve::testing::embedded_model_dir());
    try {
        chat_route(served.state(),
                   call_with({{"messages", Json::array({{{"role", "user"}, {"content", "hi"}}})}}));
        FAIL() << "accepted";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(error.what()).find("CHAT_TEMPLATE"), std::string::npos);
    }
}

// --- /v1/chat/completions on a Llama-family model with a template ------------------------------

class ChatRoutes : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!make_chat_model_dir(scratch_.path() / "model")) GTEST_SKIP() << "no llama fixture";
        served_ = std::make_unique<Served>(scratch_.path() / "model");
    }
    // The rendered prompt of `messages`, as /tokenize reports it.
    Json tokenized(const Json& messages) {
        return Json::parse(
            tokenize_route(served_->state(), call_with({{"messages", messages}})).body);
    }

    llmserve::testing::ScratchDir scratch_;
    std::unique_ptr<Served> served_;
    const Json messages_ = Json::array({{{"role", "system"}, {"content", "Be brief."}},
                                        {{"role", "user"}, {"content", "hello there"}}});
    static constexpr engine::TokenId kEndOfTurn = 0;  // <pad>: chat_fixture.h
};

TEST_F(ChatRoutes, TokenizeRendersTheTemplateWithSpecialTokensAndNoExtraBos) {
    const Json answer = tokenized(messages_);
    EXPECT_EQ(answer["prompt"],
              "<bos><|system|>Be brief.<pad><|user|>hello there<pad><|assistant|>");
    const auto ids = answer["tokens"].get<std::vector<engine::TokenId>>();
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.front(), 1);  // <bos> once, from the template
    EXPECT_NE(ids[1], 1);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), kEndOfTurn), 2);
}

TEST_F(ChatRoutes, AnswerAndStreamCarryTheEnginesGreedyText) {
    const auto ids = tokenized(messages_)["tokens"].get<std::vector<engine::TokenId>>();
    const std::string expected = served_->greedy_text(ids, 10, {kEndOfTurn});
    const Json request = {
        {"messages", messages_}, {"max_completion_tokens", 10}, {"temperature", 0}};
    const Json whole = Json::parse(chat_route(served_->state(), call_with(request)).body);
    EXPECT_EQ(whole["object"], "chat.completion");
    EXPECT_EQ(whole["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
    ASSERT_EQ(whole["choices"].size(), 1u);
    EXPECT_EQ(whole["choices"][0]["message"], Json({{"role", "assistant"}, {"content", expected}}));
    EXPECT_EQ(whole["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(whole["choices"][0]["logprobs"], nullptr);
    EXPECT_EQ(whole["usage"]["prompt_tokens"], ids.size());

    Json streamed = request;
    streamed["stream"] = true;
    streamed["stream_options"] = {{"include_usage", true}};
    const Stream stream = run_stream(chat_route(served_->state(), call_with(streamed)));
    ASSERT_TRUE(stream.done);
    ASSERT_GE(stream.events.size(), 3u);
    EXPECT_EQ(stream.events.front()["object"], "chat.completion.chunk");
    EXPECT_EQ(stream.events.front()["choices"][0]["delta"]["role"], "assistant");
    std::string text;
    for (std::size_t i = 0; i + 2 < stream.events.size(); ++i) {
        const Json& choice = stream.events[i]["choices"][0];
        EXPECT_EQ(choice["finish_reason"], nullptr);
        text += choice["delta"].value("content", "");
    }
    EXPECT_EQ(text, expected);
    const Json& finish = stream.events[stream.events.size() - 2];
    EXPECT_EQ(finish["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(finish["choices"][0]["delta"], Json::object());
    EXPECT_EQ(stream.events.back()["choices"], Json::array());
    EXPECT_EQ(stream.events.back()["usage"], whole["usage"]);
}

TEST_F(ChatRoutes, EndOfTurnStopsAndNeverAppearsInContent) {
    // A bias makes the end-of-turn token (the tokenizer's EOS, not the model's) the first choice.
    const Json request = {{"messages", messages_},
                          {"max_tokens", 10},
                          {"temperature", 0},
                          {"logprobs", true},
                          {"logit_bias", {{std::to_string(kEndOfTurn), 100}}}};
    const Json whole = Json::parse(chat_route(served_->state(), call_with(request)).body);
    EXPECT_EQ(whole["choices"][0]["finish_reason"], "stop");
    EXPECT_EQ(whole["choices"][0]["message"]["content"], "");
    EXPECT_EQ(whole["choices"][0]["logprobs"], nullptr);  // the end-of-turn token is not content
    EXPECT_EQ(whole["usage"]["completion_tokens"], 1);
}

TEST_F(ChatRoutes, SeveralChoicesAndChatShapedLogprobs) {
    const Json request = {{"messages", messages_}, {"max_tokens", 4},  {"n", 2}, {"seed", 11},
                          {"logprobs", true},      {"top_logprobs", 2}};
    const Json whole = Json::parse(chat_route(served_->state(), call_with(request)).body);
    ASSERT_EQ(whole["choices"].size(), 2u);
    for (int i = 0; i < 2; ++i) {
        const Json& choice = whole["choices"][i];
        EXPECT_EQ(choice["index"], i);
        const Json& content = choice["logprobs"]["content"];
        std::string joined;
        for (const Json& token : content) {
            EXPECT_TRUE(token["logprob"].is_number());
            EXPECT_EQ(token["top_logprobs"].size(), 2u);
            std::string bytes;
            for (const Json& b : token["bytes"]) bytes += static_cast<char>(b.get<int>());
            // A token that is part of a UTF-8 character (sampling a random model) shows as U+FFFD,
            // as OpenAI's do.
            if (tokenizer::is_valid_utf8(bytes))
                EXPECT_EQ(bytes, token["token"].get<std::string>());
            else
                EXPECT_NE(token["token"].get<std::string>().find("\xEF\xBF\xBD"),
                          std::string::npos);
            joined += bytes;
        }
        const std::string text = choice["message"]["content"];
        if (tokenizer::is_valid_utf8(joined))
            EXPECT_EQ(joined, text);
        else
            EXPECT_NE(text.find("\xEF\xBF\xBD"), std::string::npos) << text;
    }
    // Same seed, same answer.
    EXPECT_EQ(Json::parse(chat_route(served_->state(), call_with(request)).body)["choices"],
              whole["choices"]);
}

TEST_F(ChatRoutes, TemplateErrorsAndBadMessagesAreRefused) {
    const Json late_system = Json::array(
        {{{"role", "user"}, {"content", "hi"}}, {{"role", "system"}, {"content", "late"}}});
    try {
        chat_route(served_->state(), call_with({{"messages", late_system}}));
        FAIL() << "accepted";
    } catch (...) {
        const ApiError error = api_error_from(std::current_exception(), ErrorStyle::kOpenAi);
        EXPECT_EQ(error.status, 400);
        EXPECT_NE(error.message.find("the system message must come first"), std::string::npos)
            << error.message;
    }
    const auto status_of = [&](const Json& body) {
        try {
            chat_route(served_->state(), call_with(body));
        } catch (...) {
            return api_error_from(std::current_exception(), ErrorStyle::kOpenAi).status;
        }
        return 200;
    };
    EXPECT_EQ(status_of({{"messages", Json::array()}}), 400);
    EXPECT_EQ(status_of({{"messages", Json::array({{{"role", "wizard"}, {"content", "x"}}})}}),
              400);
    EXPECT_EQ(status_of({{"messages", messages_}, {"top_logprobs", 2}}), 400);
    EXPECT_EQ(status_of({{"messages", messages_}, {"continue_final_message", true}}), 400);
    EXPECT_EQ(status_of({{"messages", messages_}, {"model", "other"}}), 404);
}

TEST_F(ChatRoutes, ContentPartsAndContinuationRender) {
    const Json parts =
        Json::array({{{"role", "user"},
                      {"content", Json::array({{{"type", "text"}, {"text", "one"}},
                                               {{"type", "text"}, {"text", "two"}}})}}});
    EXPECT_EQ(tokenized(parts)["prompt"], "<bos><|user|>one\ntwo<pad><|assistant|>");

    // continue_final_message: the prompt ends inside the assistant's message.
    const Json partial = Json::array(
        {{{"role", "user"}, {"content", "hi"}}, {{"role", "assistant"}, {"content", "Sure"}}});
    const Json body = {{"messages", partial},
                       {"continue_final_message", true},
                       {"max_tokens", 3},
                       {"temperature", 0}};
    const auto ids =
        served_->engine().tokenizer().encode("<bos><|user|>hi<pad><|assistant|>Sure", false);
    EXPECT_EQ(
        Json::parse(
            chat_route(served_->state(), call_with(body)).body)["choices"][0]["message"]["content"],
        served_->greedy_text(ids, 3, {kEndOfTurn}));
}

}  // namespace
}  // namespace llmserve::server::testing
