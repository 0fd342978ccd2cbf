// Pure parts of the generation path: context fitting, engine requests, response shapes, the
// connection probe.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "server/connection_probe.h"
#include "server/errors.h"
#include "server/generation.h"
#include "server/responses.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::server {
namespace {

using Json = nlohmann::json;

const tokenizer::Tokenizer& test_tokenizer() {
    static const tokenizer::Tokenizer tokenizer =
        tokenizer::Tokenizer::from_directory(LLMSERVE_SOURCE_DIR "/models/gpt2-brown-mini");
    return tokenizer;
}

GenerationOptions options_with(int max_new_tokens, bool given, const std::string& field) {
    GenerationOptions options;
    options.stop.max_new_tokens = max_new_tokens;
    options.max_new_tokens_given = given;
    options.max_new_tokens_field = field;
    return options;
}

TEST(GenerationTest, FitToContext) {
    EXPECT_EQ(fit_to_context(10, options_with(20, true, "max_tokens"), 64), 20);
    EXPECT_EQ(fit_to_context(44, options_with(20, true, "max_tokens"), 64), 20);  // exactly full
    // A default (not given) shrinks to the room left instead of failing.
    EXPECT_EQ(fit_to_context(60, options_with(20, false, "max_length"), 64), 4);
    try {
        fit_to_context(50, options_with(20, true, "max_length"), 64);
        ADD_FAILURE();
    } catch (const ContextLengthExceeded& error) {
        EXPECT_EQ(error.param(), "max_length");
        const std::string message = error.what();
        for (const char* number : {"50", "20", "70", "64", "14"}) {
            EXPECT_NE(message.find(number), std::string::npos) << number << ": " << message;
        }
    }
    try {
        fit_to_context(64, options_with(1, false, "max_length"), 64);
        ADD_FAILURE();
    } catch (const ContextLengthExceeded& error) {
        EXPECT_EQ(error.param(), "prompt");
        EXPECT_NE(std::string(error.what()).find("64"), std::string::npos);
    }
}

TEST(GenerationTest, EngineRequestsCarryOptionsAndDeadline) {
    GenerationOptions options = options_with(30, false, "max_length");
    options.n = 3;
    options.sampling.temperature = 0.5f;
    options.stop.min_new_tokens = 25;
    options.stop.stop = {"END"};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    const std::vector<TokenizedPrompt> prompts = {{{1, 2, 3}, "abc"},
                                                  {std::vector<engine::TokenId>(50, 7), ""}};
    const auto requests = make_engine_requests(prompts, options, 64, deadline);
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_EQ(requests[0].prompt, (std::vector<engine::TokenId>{1, 2, 3}));
    EXPECT_EQ(requests[0].stop.max_new_tokens, 30);
    EXPECT_EQ(requests[0].stop.min_new_tokens, 25);
    EXPECT_EQ(requests[1].stop.max_new_tokens, 14);  // clamped to the context
    EXPECT_EQ(requests[1].stop.min_new_tokens, 14);  // and min follows
    EXPECT_EQ(requests[1].n, 3);
    EXPECT_FLOAT_EQ(requests[1].sampling.temperature, 0.5f);
    EXPECT_EQ(requests[1].stop.stop, std::vector<std::string>{"END"});
    EXPECT_EQ(requests[1].deadline, deadline);
}

TEST(GenerationTest, TokenizePromptsTextIdsAndEmpty) {
    const auto& tokenizer = test_tokenizer();
    const std::vector<Prompt> prompts = {Prompt{"Hello world", {}, false},
                                         Prompt{{}, tokenizer.encode("Hi there"), true},
                                         Prompt{"", {}, false}};
    const auto tokenized = tokenize_prompts(prompts, tokenizer, 50256);
    ASSERT_EQ(tokenized.size(), 3u);
    EXPECT_EQ(tokenized[0].ids, tokenizer.encode("Hello world"));
    EXPECT_EQ(tokenized[0].text, "Hello world");
    EXPECT_EQ(tokenized[1].text, "Hi there");
    EXPECT_EQ(tokenized[2].ids, std::vector<engine::TokenId>{50256});
    EXPECT_THROW(tokenize_prompts({Prompt{"", {}, false}}, tokenizer, std::nullopt), Error);
}

// Two prompts, two samples each, with known tokens.
std::vector<engine::RequestResult> sample_results(const tokenizer::Tokenizer& tokenizer) {
    std::vector<engine::RequestResult> results(2);
    for (int p = 0; p < 2; ++p) {
        results[p].prompt_tokens = 3 + p;
        results[p].seed = 11;
        results[p].timing = {1.0 + p, 2.0, 100.0};
        for (int s = 0; s < 2; ++s) {
            engine::SequenceResult sequence;
            sequence.index = s;
            for (const auto id : tokenizer.encode(" one two")) {
                sequence.tokens.push_back({id, -0.5f, {{id, -0.5f}, {0, -3.0f}}});
            }
            sequence.text = " one two";
            sequence.finish_reason =
                s == 0 ? engine::FinishReason::kLength : engine::FinishReason::kEos;
            results[p].completion_tokens += static_cast<int>(sequence.tokens.size());
            results[p].sequences.push_back(std::move(sequence));
        }
    }
    return results;
}

ResponseContext sample_context(const tokenizer::Tokenizer& tokenizer) {
    ResponseContext context;
    context.model_name = "m";
    context.tokenizer = &tokenizer;
    context.prompts = {{tokenizer.encode("The cat"), "The cat"},
                       {tokenizer.encode("A dog"), "A dog"}};
    context.n = 2;
    return context;
}

TEST(ResponsesTest, GenerateResponseShape) {
    const auto& tokenizer = test_tokenizer();
    const auto results = sample_results(tokenizer);
    const Json body = generate_response(sample_context(tokenizer), results);
    EXPECT_EQ(body["model"], "m");
    ASSERT_EQ(body["results"].size(), 4u);
    EXPECT_EQ(body["results"][3]["index"], 3);
    EXPECT_EQ(body["results"][3]["prompt_index"], 1);
    EXPECT_EQ(body["results"][1]["finish_reason"], "eos");
    EXPECT_EQ(body["results"][0]["generated_tokens"], results[0].sequences[0].tokens.size());
    EXPECT_EQ(body["usage"]["prompt_tokens"], 7);
    EXPECT_EQ(body["usage"]["completion_tokens"],
              results[0].completion_tokens + results[1].completion_tokens);
    EXPECT_DOUBLE_EQ(body["timing"]["queue_ms"].get<double>(), 2.0);
    EXPECT_DOUBLE_EQ(body["timing"]["tokens_per_second"].get<double>(),
                     body["usage"]["completion_tokens"].get<double>() / 0.102);
    EXPECT_FALSE(body["results"][0].contains("logprobs"));
}

TEST(ResponsesTest, CompletionResponseAndChunks) {
    const auto& tokenizer = test_tokenizer();
    auto context = sample_context(tokenizer);
    context.logprobs = 1;
    context.echo = true;
    auto results = sample_results(tokenizer);
    results[0].prompt_logprobs = {std::nullopt, -1.25f};
    const CompletionIdentity identity{"cmpl-x", 1700000000};
    const Json body = completion_response(context, identity, results);
    EXPECT_EQ(body["object"], "text_completion");
    EXPECT_EQ(body["id"], "cmpl-x");
    EXPECT_EQ(body["created"], 1700000000);
    ASSERT_EQ(body["choices"].size(), 4u);
    const Json& first = body["choices"][0];
    EXPECT_EQ(first["text"], "The cat one two");
    EXPECT_EQ(first["finish_reason"], "length");
    EXPECT_EQ(body["choices"][1]["finish_reason"], "stop");  // EOS is "stop" for OpenAI
    const Json& logprobs = first["logprobs"];
    EXPECT_EQ(logprobs["tokens"], Json({"The", " cat", " one", " two"}));
    EXPECT_TRUE(logprobs["token_logprobs"][0].is_null());
    EXPECT_FLOAT_EQ(logprobs["token_logprobs"][1].get<float>(), -1.25f);
    EXPECT_EQ(logprobs["text_offset"], Json({0, 3, 7, 11}));
    EXPECT_TRUE(logprobs["top_logprobs"][0].is_null());
    EXPECT_EQ(logprobs["top_logprobs"][2].size(), 2u);

    const Json chunk = completion_chunk(context, identity, 2, " x", nullptr, std::nullopt, true);
    EXPECT_EQ(chunk["choices"][0]["index"], 2);
    EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
    EXPECT_TRUE(chunk["usage"].is_null());
    EXPECT_FALSE(
        completion_chunk(context, identity, 0, "", nullptr, "length", false).contains("usage"));
    const Json usage = completion_usage_chunk(context, identity, results);
    EXPECT_TRUE(usage["choices"].empty());
    EXPECT_EQ(usage["usage"]["total_tokens"],
              7 + results[0].completion_tokens + results[1].completion_tokens);
    EXPECT_EQ(sse_event(Json{{"a", 1}}), "data: {\"a\":1}\n\n");
    EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
}

TEST(ConnectionProbeTest, NoticesWhenThePeerCloses) {
    const int listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ASSERT_EQ(listen(listener, 1), 0);
    socklen_t length = sizeof(address);
    getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
    const int server_port = ntohs(address.sin_port);

    const int client = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    const int accepted = accept(listener, nullptr, nullptr);
    ASSERT_GE(accepted, 0);
    sockaddr_in client_address{};
    length = sizeof(client_address);
    getsockname(client, reinterpret_cast<sockaddr*>(&client_address), &length);

    const ConnectionProbe probe =
        ConnectionProbe::find(server_port, "127.0.0.1", ntohs(client_address.sin_port));
    ASSERT_TRUE(probe.found());
    EXPECT_FALSE(probe.client_gone());
    ASSERT_EQ(send(client, "GET", 3, 0), 3);  // pending bytes do not mean gone
    EXPECT_FALSE(probe.client_gone());
    close(client);
    EXPECT_TRUE(probe.client_gone());
    EXPECT_FALSE(ConnectionProbe::find(server_port, "127.0.0.1", 1).found());
    EXPECT_FALSE(ConnectionProbe().client_gone());
    close(accepted);
    close(listener);
}

}  // namespace
}  // namespace llmserve::server
