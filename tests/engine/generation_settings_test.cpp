// Request defaults: an explicit setting > generation_config.json > built-in, field by field.
#include "engine/generation_settings.h"

#include <gtest/gtest.h>

namespace llmserve::engine {
namespace {

TEST(GenerationSettings, ExplicitThenModelThenBuiltIn) {
    const GenerationSettings built_in;
    EXPECT_EQ(resolve_generation_settings({}, {}).temperature, built_in.temperature);

    model::GenerationDefaults model;  // as Qwen2.5-Instruct's generation_config.json
    model.do_sample = true;
    model.temperature = 0.7f;
    model.top_p = 0.8f;
    model.top_k = 20;
    model.repetition_penalty = 1.05f;
    GenerationSettings got = resolve_generation_settings({}, model);
    EXPECT_FLOAT_EQ(got.temperature, 0.7);
    EXPECT_FLOAT_EQ(got.top_p, 0.8);
    EXPECT_EQ(got.top_k, 20);
    EXPECT_FLOAT_EQ(got.repetition_penalty, 1.05f);
    EXPECT_EQ(got.max_new_tokens, built_in.max_new_tokens);

    got =
        resolve_generation_settings({.max_new_tokens = 7, .temperature = 1.5, .top_p = 0.5}, model);
    EXPECT_EQ(got.max_new_tokens, 7);
    EXPECT_EQ(got.temperature, 1.5);
    EXPECT_EQ(got.top_p, 0.5);
    EXPECT_EQ(got.top_k, 20);  // no explicit setting exists for it

    model.do_sample = false;  // transformers decodes greedily then
    EXPECT_EQ(resolve_generation_settings({}, model).temperature, 0.0);
    EXPECT_EQ(resolve_generation_settings({std::nullopt, 0.9, std::nullopt}, model).temperature,
              0.9);
}

}  // namespace
}  // namespace llmserve::engine
