#include "server/schemas.h"

#include <gtest/gtest.h>

#include <string>

#include "server/errors.h"

namespace llmserve::server {
namespace {

RequestLimits test_limits() {
    RequestLimits limits;
    limits.model_name = "tiny";
    limits.vocab_size = 1000;
    limits.n_positions = 64;
    limits.max_n = 4;
    limits.max_prompts = 3;
    limits.max_sequences = 6;
    limits.default_max_new_tokens = 20;
    limits.default_temperature = 0.7f;
    limits.default_top_p = 0.9f;
    return limits;
}

enum class Expect { k400, k422, k404, kUnsupported };

// Runs `parse` on `body`, expecting the given kind of error naming `param`.
template <typename Parse>
void expect_error(Parse parse, const std::string& body, Expect expect, const std::string& param,
                  const std::string& message_part = "",
                  const RequestLimits& limits = test_limits()) {
    SCOPED_TRACE(body);
    try {
        parse(body, limits);
        ADD_FAILURE() << "accepted";
        return;
    } catch (const MalformedRequest& error) {
        EXPECT_EQ(expect, Expect::k400) << error.what();
        EXPECT_EQ(error.param(), param) << error.what();
        EXPECT_NE(std::string(error.what()).find(message_part), std::string::npos) << error.what();
    } catch (const Error& error) {
        const ErrorCode expected_code = expect == Expect::k404   ? ErrorCode::kNotFound
                                        : expect == Expect::k422 ? ErrorCode::kInvalidArgument
                                                                 : ErrorCode::kUnsupported;
        EXPECT_NE(expect, Expect::k400) << error.what();
        EXPECT_EQ(error.code(), expected_code) << error.what();
        EXPECT_EQ(error.param(), param) << error.what();
        EXPECT_NE(std::string(error.what()).find(message_part), std::string::npos) << error.what();
        if (expect == Expect::k422 && !param.empty()) {
            EXPECT_NE(std::string(error.what()).find(param), std::string::npos) << error.what();
        }
    }
}

const auto generate = [](const std::string& body, const RequestLimits& limits) {
    return parse_generate_request(body, limits);
};
const auto completion = [](const std::string& body, const RequestLimits& limits) {
    return parse_completion_request(body, limits);
};

std::vector<std::string> prompt_texts(const ApiRequest& request) {
    std::vector<std::string> texts;
    for (const Prompt& prompt : request.prompts) texts.push_back(prompt.text);
    return texts;
}

TEST(GenerateSchemaTest, MinimalRequestGetsServerDefaults) {
    const ApiRequest request = parse_generate_request(R"({"prompt": "Hello"})", test_limits());
    ASSERT_EQ(prompt_texts(request), std::vector<std::string>{"Hello"});
    EXPECT_FALSE(request.stream);
    EXPECT_EQ(request.options.n, 1);
    EXPECT_FLOAT_EQ(request.options.sampling.temperature, 0.7f);
    EXPECT_FLOAT_EQ(request.options.sampling.top_p, 0.9f);
    EXPECT_EQ(request.options.stop.max_new_tokens, 20);
    EXPECT_FALSE(request.options.max_new_tokens_given);
    EXPECT_FALSE(request.options.sampling.seed);
}

TEST(GenerateSchemaTest, EveryControlIsMapped) {
    const ApiRequest request = parse_generate_request(
        R"({"prompt": ["a", "b"], "max_length": 12, "min_new_tokens": 3, "temperature": 1.5,
            "top_p": 0.5, "top_k": 40, "min_p": 0.05, "typical_p": 0.8, "repetition_penalty": 1.2,
            "presence_penalty": 0.5, "frequency_penalty": -0.5, "no_repeat_ngram_size": 3,
            "logit_bias": {"17": -100, "5": 2.5}, "bad_words_ids": [[1], [2, 3]],
            "seed": 18446744073709551615, "logprobs": 2, "prompt_logprobs": true,
            "stop": ["\n\n", "END"], "stop_token_ids": [7], "ignore_eos": true,
            "num_return_sequences": 3, "stream": true})",
        test_limits());
    EXPECT_EQ(prompt_texts(request), (std::vector<std::string>{"a", "b"}));
    const auto& s = request.options.sampling;
    const auto& stop = request.options.stop;
    EXPECT_EQ(stop.max_new_tokens, 12);
    EXPECT_TRUE(request.options.max_new_tokens_given);
    EXPECT_EQ(stop.min_new_tokens, 3);
    EXPECT_FLOAT_EQ(s.temperature, 1.5f);
    EXPECT_FLOAT_EQ(s.top_p, 0.5f);
    EXPECT_EQ(s.top_k, 40);
    EXPECT_FLOAT_EQ(s.min_p, 0.05f);
    EXPECT_FLOAT_EQ(s.typical_p, 0.8f);
    EXPECT_FLOAT_EQ(s.repetition_penalty, 1.2f);
    EXPECT_FLOAT_EQ(s.presence_penalty, 0.5f);
    EXPECT_FLOAT_EQ(s.frequency_penalty, -0.5f);
    EXPECT_EQ(s.no_repeat_ngram_size, 3);
    EXPECT_EQ(s.logit_bias.size(), 2u);
    EXPECT_EQ(s.bad_words_ids, (std::vector<std::vector<engine::TokenId>>{{1}, {2, 3}}));
    EXPECT_EQ(s.seed, 18446744073709551615ull);
    EXPECT_EQ(s.logprobs, 2);
    EXPECT_TRUE(s.prompt_logprobs);
    EXPECT_EQ(stop.stop, (std::vector<std::string>{"\n\n", "END"}));
    EXPECT_EQ(stop.stop_token_ids, std::vector<engine::TokenId>{7});
    EXPECT_TRUE(stop.ignore_eos);
    EXPECT_EQ(request.options.n, 3);
    EXPECT_TRUE(request.stream);
}

TEST(GenerateSchemaTest, NullMeansNotGivenAndIntegralFloatsAreIntegers) {
    const ApiRequest request = parse_generate_request(
        R"({"prompt": "x", "temperature": null, "seed": null, "max_new_tokens": 5.0})",
        test_limits());
    EXPECT_FLOAT_EQ(request.options.sampling.temperature, 0.7f);
    EXPECT_FALSE(request.options.sampling.seed);
    EXPECT_EQ(request.options.stop.max_new_tokens, 5);
}

TEST(GenerateSchemaTest, DoSampleFalseIsGreedy) {
    const ApiRequest request = parse_generate_request(
        R"({"prompt": "x", "do_sample": false, "temperature": 0.9})", test_limits());
    EXPECT_TRUE(engine::is_greedy(request.options.sampling));
}

TEST(GenerateSchemaTest, MalformedBodiesAndWrongTypesAre400) {
    expect_error(generate, "", Expect::k400, "", "empty");
    expect_error(generate, "{\"prompt\": ", Expect::k400, "", "not valid JSON");
    expect_error(generate, "[1, 2]", Expect::k400, "", "JSON object");
    expect_error(generate, "\"text\"", Expect::k400, "", "JSON object");
    expect_error(generate, "{}", Expect::k400, "prompt", "required");
    expect_error(generate, R"({"prompt": 5})", Expect::k400, "prompt");
    expect_error(generate, R"({"prompt": ["a", 1]})", Expect::k400, "prompt");
    expect_error(generate, R"({"prompt": "a", "temperature": "hot"})", Expect::k400, "temperature",
                 "number");
    expect_error(generate, R"({"prompt": "a", "top_k": 2.5})", Expect::k400, "top_k", "integer");
    expect_error(generate, R"({"prompt": "a", "top_k": true})", Expect::k400, "top_k");
    expect_error(generate, R"({"prompt": "a", "stream": "yes"})", Expect::k400, "stream",
                 "boolean");
    expect_error(generate, R"({"prompt": "a", "stop": [1]})", Expect::k400, "stop");
    expect_error(generate, R"({"prompt": "a", "logit_bias": {"x": 1}})", Expect::k400, "logit_bias",
                 "token ids");
    expect_error(generate, R"({"prompt": "a", "bad_words_ids": [1]})", Expect::k400,
                 "bad_words_ids");
    expect_error(generate, R"({"prompt": "a", "temprature": 1})", Expect::k400, "temprature",
                 "unknown field");
    std::string deep =
        R"({"prompt": "a", "stop": )" + std::string(40, '[') + std::string(40, ']') + "}";
    expect_error(generate, deep, Expect::k400, "", "deeper");
}

TEST(GenerateSchemaTest, OutOfRangeValuesAre422NamingTheField) {
    expect_error(generate, R"({"prompt": "a", "temperature": -1})", Expect::k422, "temperature",
                 "-1");
    expect_error(generate, R"({"prompt": "a", "temperature": 1e300})", Expect::k422, "temperature");
    expect_error(generate, R"({"prompt": "a", "top_p": 0})", Expect::k422, "top_p");
    expect_error(generate, R"({"prompt": "a", "top_k": -2})", Expect::k422, "top_k", "-2");
    expect_error(generate, R"({"prompt": "a", "top_k": 1001})", Expect::k422, "top_k", "1001");
    expect_error(generate, R"({"prompt": "a", "repetition_penalty": 0})", Expect::k422,
                 "repetition_penalty");
    expect_error(generate, R"({"prompt": "a", "max_length": 64})", Expect::k422, "max_length",
                 "63");
    expect_error(generate, R"({"prompt": "a", "max_new_tokens": -1})", Expect::k422,
                 "max_new_tokens");
    expect_error(generate, R"({"prompt": "a", "max_length": 5, "max_new_tokens": 5})", Expect::k422,
                 "max_new_tokens", "not both");
    expect_error(generate, R"({"prompt": "a", "max_length": 5, "min_new_tokens": 9})", Expect::k422,
                 "min_new_tokens");
    expect_error(generate, R"({"prompt": "a", "num_return_sequences": 5})", Expect::k422,
                 "num_return_sequences", "[1, 4]");
    expect_error(generate, R"({"prompt": ["a", "b"], "num_return_sequences": 4})", Expect::k422,
                 "num_return_sequences", "6");
    expect_error(generate, R"({"prompt": ["a", "b", "c", "d"]})", Expect::k422, "prompt", "3");
    expect_error(generate, R"({"prompt": []})", Expect::k422, "prompt", "empty");
    expect_error(generate, R"({"prompt": "a", "seed": -1})", Expect::k422, "seed");
    expect_error(generate, R"({"prompt": "a", "logprobs": 21})", Expect::k422, "logprobs");
    expect_error(generate, R"({"prompt": "a", "stop": [""]})", Expect::k422, "stop");
    expect_error(generate, R"({"prompt": "a", "stop_token_ids": [1000]})", Expect::k422,
                 "stop_token_ids", "1000");
    expect_error(generate, R"({"prompt": "a", "logit_bias": {"3": 101}})", Expect::k422,
                 "logit_bias");
    expect_error(generate, R"({"prompt": "a", "logit_bias": {"1000": 1}})", Expect::k422,
                 "logit_bias", "1000");
}

TEST(CompletionSchemaTest, PromptForms) {
    const RequestLimits limits = test_limits();
    auto text = parse_completion_request(R"({"prompt": "hi"})", limits).prompts;
    ASSERT_EQ(text.size(), 1u);
    EXPECT_FALSE(text[0].is_token_ids);
    EXPECT_EQ(text[0].text, "hi");
    auto texts = parse_completion_request(R"({"prompt": ["a", "b"]})", limits).prompts;
    ASSERT_EQ(texts.size(), 2u);
    EXPECT_EQ(texts[1].text, "b");
    auto ids = parse_completion_request(R"({"prompt": [1, 2, 3]})", limits).prompts;
    ASSERT_EQ(ids.size(), 1u);
    EXPECT_TRUE(ids[0].is_token_ids);
    EXPECT_EQ(ids[0].token_ids, (std::vector<engine::TokenId>{1, 2, 3}));
    auto batches = parse_completion_request(R"({"prompt": [[1], [2, 3]]})", limits).prompts;
    ASSERT_EQ(batches.size(), 2u);
    EXPECT_EQ(batches[1].token_ids, (std::vector<engine::TokenId>{2, 3}));

    expect_error(completion, R"({"prompt": [1, "a"]})", Expect::k400, "prompt");
    expect_error(completion, R"({"prompt": ["a", [1]]})", Expect::k400, "prompt");
    expect_error(completion, R"({"prompt": [[1], []]})", Expect::k422, "prompt");
    expect_error(completion, R"({"prompt": [1, 1000]})", Expect::k422, "prompt", "999");
    expect_error(completion, R"({"prompt": {"a": 1}})", Expect::k400, "prompt");
}

TEST(CompletionSchemaTest, OpenAIFieldsAndExtensions) {
    const ApiRequest request = parse_completion_request(
        R"({"model": "tiny", "prompt": "x", "max_tokens": 7, "temperature": 0, "top_p": 1,
            "n": 2, "best_of": 2, "stream": true, "stream_options": {"include_usage": true},
            "stop": "\n", "seed": 3, "logprobs": 1, "echo": true, "presence_penalty": 0.1,
            "frequency_penalty": 0.2, "logit_bias": {"50": 10}, "user": "me", "suffix": null,
            "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.1, "ignore_eos": true,
            "min_tokens": 2})",
        test_limits());
    EXPECT_EQ(request.options.stop.max_new_tokens, 7);
    EXPECT_TRUE(engine::is_greedy(request.options.sampling));
    EXPECT_EQ(request.options.n, 2);
    EXPECT_TRUE(request.stream);
    EXPECT_TRUE(request.include_usage);
    EXPECT_EQ(request.options.stop.stop, std::vector<std::string>{"\n"});
    EXPECT_EQ(request.options.sampling.seed, 3u);
    EXPECT_EQ(request.options.sampling.logprobs, 1);
    EXPECT_TRUE(request.echo);
    EXPECT_TRUE(request.options.sampling.prompt_logprobs);  // echo + logprobs
    EXPECT_EQ(request.user, "me");
    EXPECT_EQ(request.options.sampling.top_k, 5);
    EXPECT_TRUE(request.options.stop.ignore_eos);
    EXPECT_EQ(request.options.stop.min_new_tokens, 2);
}

TEST(CompletionSchemaTest, Errors) {
    expect_error(completion, R"({"prompt": "x", "model": "gpt-4"})", Expect::k404, "model",
                 "gpt-4");
    expect_error(completion, R"({"prompt": "x", "best_of": 3})", Expect::kUnsupported, "best_of");
    expect_error(completion, R"({"prompt": "x", "suffix": "end"})", Expect::kUnsupported, "suffix");
    RequestLimits strict = test_limits();
    strict.strict_requests = true;
    expect_error(completion, R"({"prompt": "x", "stream_options": {"foo": 1}})", Expect::k400,
                 "stream_options", "foo", strict);
    expect_error(completion, R"({"prompt": "x", "colour": 1})", Expect::k400, "colour", "colour",
                 strict);
    expect_error(completion, R"({"prompt": "x", "max_tokens": 100})", Expect::k422, "max_tokens",
                 "max_tokens");
    expect_error(completion, R"({"prompt": "x", "max_tokens": 3, "min_tokens": 4})", Expect::k422,
                 "min_tokens", "min_tokens");
    expect_error(completion, R"({"prompt": "x", "n": 0})", Expect::k422, "n");
    expect_error(completion, R"({"model": "tiny"})", Expect::k400, "prompt", "required");
}

TEST(TokenizeSchemaTest, Shapes) {
    EXPECT_EQ(parse_tokenize_request(R"({"prompt": "héllo"})", test_limits()).prompt, "héllo");
    EXPECT_EQ(parse_detokenize_request(R"({"tokens": [1, 2]})", test_limits()).tokens,
              (std::vector<engine::TokenId>{1, 2}));
    const auto tokenize = [](const std::string& body, const RequestLimits& limits) {
        return parse_tokenize_request(body, limits);
    };
    const auto detokenize = [](const std::string& body, const RequestLimits& limits) {
        return parse_detokenize_request(body, limits);
    };
    expect_error(tokenize, R"({"text": "x"})", Expect::k400, "text");
    expect_error(tokenize, R"({"prompt": 3})", Expect::k400, "prompt");
    expect_error(detokenize, R"({"tokens": [-1]})", Expect::k422, "tokens");
    expect_error(detokenize, R"({"tokens": "1 2"})", Expect::k400, "tokens");
}

TEST(TokenizeSchemaTest, ChatFieldsSurviveTheMessages) {
    // add_generation_prompt sorts before messages; reading messages must not reset it.
    const TokenizeRequest chat = parse_tokenize_request(
        R"({"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": false,
            "tools": [{"type": "function", "function": {"name": "f"}}]})",
        test_limits());
    ASSERT_TRUE(chat.chat);
    EXPECT_FALSE(chat.chat->add_generation_prompt);
    EXPECT_EQ(chat.chat->tools.size(), 1u);
    const auto tokenize = [](const std::string& body, const RequestLimits& limits) {
        return parse_tokenize_request(body, limits);
    };
    expect_error(tokenize, R"({"messages": [{"role": "user", "content": "hi"}], "tools": [{}]})",
                 Expect::k400, "tools[0].type");
}

}  // namespace
}  // namespace llmserve::server
