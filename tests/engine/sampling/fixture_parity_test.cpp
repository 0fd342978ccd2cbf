// Parity with transformers' logits processors on $LLMSERVE_FIXTURES/sampling.jsonl (default: the
// vendored tests/fixtures). Every row is discovered from the file: repetition penalty over
// prev_ids, then temperature, top_k, top_p; the surviving tokens must be exactly kept_ids and
// their probabilities within 1e-5 of probs.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "engine/sampling/logits_processor.h"
#include "test_support.h"
#include "tests/common/test_paths.h"

namespace llmserve::engine {
namespace {

constexpr double kProbabilityTolerance = 1e-5;
using llmserve::testing::fixtures_dir;

std::vector<nlohmann::json> read_rows(const std::filesystem::path& path) {
    std::ifstream in(path);
    if (!in) ADD_FAILURE() << "cannot open " << path;
    std::vector<nlohmann::json> rows;
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
    }
    return rows;
}

TEST(SamplingFixture, MatchesTransformersKeptSetAndProbabilities) {
    const std::filesystem::path path = fixtures_dir() / "sampling.jsonl";
    const std::vector<nlohmann::json> rows = read_rows(path);
    ASSERT_FALSE(rows.empty()) << path << " holds no rows";

    LogitsProcessor processor;
    for (std::size_t row_index = 0; row_index < rows.size(); ++row_index) {
        const nlohmann::json& row = rows[row_index];
        SCOPED_TRACE("sampling.jsonl row " + std::to_string(row_index) + " (0-based)");

        std::vector<float> logits = row.at("logits").get<std::vector<float>>();
        const auto prev_ids = row.at("prev_ids").get<std::vector<TokenId>>();
        SamplingParams params;
        params.temperature = row.at("temperature").get<float>();
        params.top_k = row.at("top_k").get<int>();
        params.top_p = row.at("top_p").get<float>();
        params.repetition_penalty = row.at("repetition_penalty").get<float>();
        const SequenceTokens history(prev_ids);

        processor.process(params, StopParams{}, {}, history, logits);

        std::vector<TokenId> kept;
        for (std::size_t i = 0; i < logits.size(); ++i) {
            if (!testing::removed(logits[i])) kept.push_back(static_cast<TokenId>(i));
        }
        // (id, probability) pairs of the reference, in id order whatever order the file uses.
        const auto expected_ids = row.at("kept_ids").get<std::vector<TokenId>>();
        const auto expected_probs = row.at("probs").get<std::vector<double>>();
        ASSERT_EQ(expected_ids.size(), expected_probs.size()) << "malformed row";
        std::vector<std::pair<TokenId, double>> expected;
        for (std::size_t k = 0; k < expected_ids.size(); ++k) {
            expected.emplace_back(expected_ids[k], expected_probs[k]);
        }
        std::sort(expected.begin(), expected.end());
        std::vector<TokenId> expected_kept;
        for (const auto& [token, prob] : expected) expected_kept.push_back(token);
        ASSERT_EQ(kept, expected_kept) << "kept token set differs";

        const std::vector<double> probs = testing::softmax(logits);
        for (const auto& [token, prob] : expected) {
            EXPECT_NEAR(probs[static_cast<std::size_t>(token)], prob, kProbabilityTolerance)
                << "probability of token " << token;
        }
    }
}

}  // namespace
}  // namespace llmserve::engine
