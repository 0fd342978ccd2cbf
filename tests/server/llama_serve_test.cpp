// `llmserve serve --model <dir>` on a Qwen2-shaped fixture (discovered: the first models-llama
// folder whose model_type is qwen2): /v1/completions, streaming and not, answers with the tokens of
// the engine's greedy decoding, which equal the reference's (transformers') greedy tokens. The
// fixtures have no tokenizer, so the test gives the model one (tests/common/tiny_tokenizer.h).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/engine.h"
#include "model/model.h"
#include "tests/common/model_runs.h"
#include "tests/common/scratch_dir.h"
#include "tests/common/test_paths.h"
#include "tests/common/tiny_tokenizer.h"
#include "tests/server/server_process.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::server::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path qwen2_fixture() {
    for (const fs::path& dir :
         llmserve::testing::subdirectories(llmserve::testing::fixtures_dir() / "models-llama")) {
        const json config = json::parse(llmserve::testing::read_text(dir / "config.json"));
        if (config.value("model_type", "") == "qwen2") return dir;
    }
    return {};
}

TEST(LlamaServe, CompletionsAnswerWithTheReferenceGreedyTokens) {
    const fs::path fixture = qwen2_fixture();
    if (fixture.empty()) GTEST_SKIP() << "no qwen2 folder under models-llama";
    llmserve::testing::ScratchDir scratch;
    const fs::path dir = scratch.path() / "qwen2-with-tokenizer";
    llmserve::testing::copy_with_tiny_tokenizer(fixture, dir);
    const json config = json::parse(llmserve::testing::read_text(dir / "config.json"));

    // The engine's greedy tokens for each reference prompt equal transformers' (up to a near-tie)
    // and are what the server must answer with.
    auto tokenizer =
        std::make_shared<const tokenizer::Tokenizer>(tokenizer::Tokenizer::from_directory(dir));
    engine::Engine engine(
        model::Model::load(dir, {backend::make_cpu_backend(1), backend::WeightFormat::kAuto}),
        tokenizer, {});
    const json reference = json::parse(llmserve::testing::read_text(fixture / "reference.json"));
    ServerProcess server({{"MODEL_NAME", dir.string()}});
    auto client = server.client();
    for (const json& c : reference.at("cases")) {
        const auto ids = c.at("input_ids").get<std::vector<std::int32_t>>();
        const auto expected = c.at("greedy_new_tokens").get<std::vector<std::int32_t>>();
        SCOPED_TRACE(std::to_string(ids.size()) + "-token prompt");
        engine::GenerationRequest request =
            llmserve::testing::greedy_request(ids, static_cast<int>(expected.size()));
        const engine::RequestResult result = engine.submit(request)->wait();
        llmserve::testing::expect_greedy_match(
            llmserve::testing::tokens_of(result.sequences.at(0)), expected,
            c.at("greedy_margins").get<std::vector<double>>(), 1e-3);
        const std::string& text = result.sequences.at(0).text;

        json body = {{"prompt", ids},
                     {"max_tokens", expected.size()},
                     {"temperature", 0},
                     {"ignore_eos", true}};
        const auto plain = post_json(*client, "/v1/completions", body);
        ASSERT_EQ(plain->status, 200) << plain->body;
        const json answer = json::parse(plain->body);
        EXPECT_EQ(answer["choices"][0]["text"], text);
        EXPECT_EQ(answer["usage"]["completion_tokens"], expected.size());

        body["stream"] = true;
        const auto streamed = post_json(*client, "/v1/completions", body);
        ASSERT_EQ(streamed->status, 200) << streamed->body;
        const EventStream events = parse_event_stream(streamed->body);
        EXPECT_TRUE(events.done);
        std::string joined;
        for (const json& event : events.events)
            if (!event["choices"].empty()) joined += event["choices"][0]["text"].get<std::string>();
        EXPECT_EQ(joined, text);
    }
    const auto info = client->Get("/info");
    ASSERT_EQ(info->status, 200);
    const json model_info = json::parse(info->body)["model"];
    EXPECT_EQ(model_info["architecture"], "qwen2");
    EXPECT_EQ(model_info["spec"]["positions"], "rope");
    EXPECT_EQ(model_info["spec"]["n_kv_head"], config.at("num_key_value_heads"));
}

}  // namespace
}  // namespace llmserve::server::testing
