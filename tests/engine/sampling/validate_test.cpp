// validate(): each rule fails with param() = the field and a message naming the field and value.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/sampling/sampling_params.h"

namespace llmserve::engine {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

ModelLimits gpt2_limits() {
    return {.vocab_size = 50257, .n_positions = 1024, .prompt_tokens = 10};
}

struct Request {
    SamplingParams sampling;
    StopParams stop;
    ModelLimits limits = gpt2_limits();
};

struct Rule {
    std::string description;
    std::function<void(Request&)> break_it;
    std::string param;       // expected Error::param()
    std::string value_text;  // must appear in the message
};

std::vector<Rule> rules() {
    return {
        {"temperature negative", [](Request& r) { r.sampling.temperature = -0.5f; }, "temperature",
         "-0.5"},
        {"temperature too high", [](Request& r) { r.sampling.temperature = 101.0f; }, "temperature",
         "101"},
        {"temperature NaN", [](Request& r) { r.sampling.temperature = kNaN; }, "temperature",
         "nan"},
        {"temperature inf", [](Request& r) { r.sampling.temperature = kInf; }, "temperature",
         "inf"},
        {"top_k negative", [](Request& r) { r.sampling.top_k = -1; }, "top_k", "-1"},
        {"top_k above vocab", [](Request& r) { r.sampling.top_k = 50258; }, "top_k", "50258"},
        {"top_p zero", [](Request& r) { r.sampling.top_p = 0.0f; }, "top_p", "0"},
        {"top_p above 1", [](Request& r) { r.sampling.top_p = 1.5f; }, "top_p", "1.5"},
        {"top_p NaN", [](Request& r) { r.sampling.top_p = kNaN; }, "top_p", "nan"},
        {"min_p negative", [](Request& r) { r.sampling.min_p = -0.1f; }, "min_p", "-0.1"},
        {"min_p above 1", [](Request& r) { r.sampling.min_p = 1.25f; }, "min_p", "1.25"},
        {"typical_p zero", [](Request& r) { r.sampling.typical_p = 0.0f; }, "typical_p", "0"},
        {"typical_p inf", [](Request& r) { r.sampling.typical_p = kInf; }, "typical_p", "inf"},
        {"repetition_penalty zero", [](Request& r) { r.sampling.repetition_penalty = 0.0f; },
         "repetition_penalty", "0"},
        {"repetition_penalty NaN", [](Request& r) { r.sampling.repetition_penalty = kNaN; },
         "repetition_penalty", "nan"},
        {"repetition_penalty that divides logits to infinity",
         [](Request& r) { r.sampling.repetition_penalty = 1e-38f; }, "repetition_penalty", "0.01"},
        {"presence_penalty", [](Request& r) { r.sampling.presence_penalty = 2.5f; },
         "presence_penalty", "2.5"},
        {"frequency_penalty", [](Request& r) { r.sampling.frequency_penalty = -3.0f; },
         "frequency_penalty", "-3"},
        {"no_repeat_ngram_size negative", [](Request& r) { r.sampling.no_repeat_ngram_size = -2; },
         "no_repeat_ngram_size", "-2"},
        {"no_repeat_ngram_size huge", [](Request& r) { r.sampling.no_repeat_ngram_size = 5000; },
         "no_repeat_ngram_size", "5000"},
        {"logit_bias id",
         [](Request& r) {
             r.sampling.logit_bias = {{50257, 1.0f}};
         },
         "logit_bias", "50257"},
        {"logit_bias negative id",
         [](Request& r) {
             r.sampling.logit_bias = {{-4, 1.0f}};
         },
         "logit_bias", "-4"},
        {"logit_bias value",
         [](Request& r) {
             r.sampling.logit_bias = {{7, 150.0f}};
         },
         "logit_bias", "150"},
        {"logit_bias NaN",
         [](Request& r) {
             r.sampling.logit_bias = {{7, kNaN}};
         },
         "logit_bias", "nan"},
        {"logit_bias duplicate",
         [](Request& r) {
             r.sampling.logit_bias = {{7, 1.0f}, {7, 2.0f}};
         },
         "logit_bias", "7"},
        {"bad_words_ids empty entry",
         [](Request& r) {
             r.sampling.bad_words_ids = {{1}, {}};
         },
         "bad_words_ids", "bad_words_ids[1]"},
        {"bad_words_ids id",
         [](Request& r) {
             r.sampling.bad_words_ids = {{1, 99999}};
         },
         "bad_words_ids", "99999"},
        {"bad_words_ids too long",
         [](Request& r) {
             r.sampling.bad_words_ids = {std::vector<TokenId>(kMaxBadWordTokens + 1, 1)};
         },
         "bad_words_ids", std::to_string(kMaxBadWordTokens + 1)},
        {"bad_words_ids too many",
         [](Request& r) {
             r.sampling.bad_words_ids = std::vector<std::vector<TokenId>>(kMaxBadWords + 1, {1});
         },
         "bad_words_ids", std::to_string(kMaxBadWords + 1)},
        {"logprobs negative", [](Request& r) { r.sampling.logprobs = -1; }, "logprobs", "-1"},
        {"logprobs above 20", [](Request& r) { r.sampling.logprobs = 21; }, "logprobs", "21"},
        {"max_new_tokens negative", [](Request& r) { r.stop.max_new_tokens = -5; },
         "max_new_tokens", "-5"},
        {"min_new_tokens above max", [](Request& r) { r.stop.min_new_tokens = 101; },
         "min_new_tokens", "101"},
        {"min_new_tokens negative", [](Request& r) { r.stop.min_new_tokens = -1; },
         "min_new_tokens", "-1"},
        {"stop too many",
         [](Request& r) { r.stop.stop = std::vector<std::string>(kMaxStopStrings + 1, "x"); },
         "stop", std::to_string(kMaxStopStrings + 1)},
        {"stop empty",
         [](Request& r) {
             r.stop.stop = {"ok", ""};
         },
         "stop", "stop[1]"},
        {"stop too long", [](Request& r) { r.stop.stop = {std::string(kMaxStopBytes + 1, 'x')}; },
         "stop", std::to_string(kMaxStopBytes + 1)},
        {"stop invalid UTF-8", [](Request& r) { r.stop.stop = {"a\xFF"}; }, "stop", "0xff"},
        {"stop_token_ids id",
         [](Request& r) {
             r.stop.stop_token_ids = {3, 60000};
         },
         "stop_token_ids", "60000"},
        {"n zero", [](Request& r) { r.limits.n = 0; }, "n", "0"},
        {"n above max", [](Request& r) { r.limits.n = 17; }, "n", "17"},
        {"empty prompt", [](Request& r) { r.limits.prompt_tokens = 0; }, "prompt", "0"},
        {"prompt fills context",
         [](Request& r) {
             r.limits.prompt_tokens = 1024;
             r.stop.max_new_tokens = 0;
         },
         "prompt", "1024"},
        {"prompt + max_new_tokens",
         [](Request& r) {
             r.limits.prompt_tokens = 1000;
             r.stop.max_new_tokens = 30;
         },
         "max_new_tokens", "1030"},
    };
}

TEST(Validate, DefaultsAndBoundaryValuesAreAccepted) {
    Request request;
    EXPECT_NO_THROW(validate(request.sampling, request.stop, request.limits));
    request.sampling.temperature = 0.0f;
    request.sampling.top_k = 50257;
    request.sampling.top_p = 1.0f;
    request.sampling.min_p = 1.0f;
    request.sampling.typical_p = 1e-3f;
    request.sampling.presence_penalty = -2.0f;
    request.sampling.frequency_penalty = 2.0f;
    request.sampling.logit_bias = {{0, -100.0f}, {50256, 100.0f}};
    request.sampling.bad_words_ids = {{50256}, {1, 2, 3}};
    request.sampling.logprobs = 20;
    request.stop.max_new_tokens = 1014;  // exactly fills the 1024-token context
    request.stop.min_new_tokens = 1014;
    request.stop.stop = {"\n\n", "日本"};
    request.limits.n = 16;
    EXPECT_NO_THROW(validate(request.sampling, request.stop, request.limits));
}

TEST(Validate, EachRuleNamesFieldAndValue) {
    for (const Rule& rule : rules()) {
        Request request;
        rule.break_it(request);
        try {
            validate(request.sampling, request.stop, request.limits);
            ADD_FAILURE() << rule.description << ": accepted";
        } catch (const Error& error) {
            EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument) << rule.description;
            EXPECT_EQ(error.param(), rule.param) << rule.description;
            const std::string message = error.what();
            EXPECT_NE(message.find(rule.param), std::string::npos)
                << rule.description << ": message does not name the field: " << message;
            EXPECT_NE(message.find(rule.value_text), std::string::npos)
                << rule.description << ": message does not show the value: " << message;
        }
    }
}

TEST(Validate, ContextOverflowMessageGivesBothNumbersAndLimit) {
    Request request;
    request.limits.prompt_tokens = 1000;
    request.stop.max_new_tokens = 30;
    try {
        validate(request.sampling, request.stop, request.limits);
        FAIL() << "accepted";
    } catch (const Error& error) {
        const std::string message = error.what();
        for (const char* number : {"1000", "30", "1024"}) {
            EXPECT_NE(message.find(number), std::string::npos) << message;
        }
    }
}

}  // namespace
}  // namespace llmserve::engine
