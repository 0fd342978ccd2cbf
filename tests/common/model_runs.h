// Running a model the way transformers' reference files were made, and comparing with them:
// full-sequence logits, greedy continuations, reference float32 arrays. For tests that link
// llmserve_engine.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/engine.h"
#include "model/model.h"
#include "tests/common/test_paths.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::testing {

// The raw little-endian float32 array of a reference file (`logits_file` of reference.json); an
// unreadable file fails the calling test and gives an empty array.
inline std::vector<float> read_f32(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        ADD_FAILURE() << "cannot open " << file;
        return {};
    }
    in.seekg(0, std::ios::end);
    std::vector<float> values(static_cast<std::size_t>(in.tellg()) / sizeof(float));
    in.seekg(0);
    in.read(reinterpret_cast<char*>(values.data()),
            static_cast<std::streamsize>(values.size() * sizeof(float)));
    return values;
}

// Forward passes of one sequence from position 0 on `model` (which must outlive this), with a
// private KV cache (in `kv_format`) and workspace for up to `max_tokens` tokens that every call
// reuses.
class ForwardPass {
  public:
    ForwardPass(const model::Model& model, int max_tokens,
                backend::KvFormat kv_format = backend::KvFormat::kF32)
        : model_(model),
          blocks_((max_tokens + kBlockTokens - 1) / kBlockTokens),
          kv_(model.backend().allocate_kv(model.config().n_layer, blocks_, kBlockTokens,
                                          model.config().kv_dim(), kv_format)),
          workspace_(model.backend(), model.config(), max_tokens, max_tokens),
          table_(static_cast<std::size_t>(blocks_)) {
        for (int b = 0; b < blocks_; ++b) table_[b] = b;
    }

    // [ids.size() - first_logits, vocab]: the logits of positions [first_logits, ids.size()) of
    // one forward pass of `ids` (at most max_tokens of them) from position 0.
    std::vector<float> logits(std::span<const std::int32_t> ids, int first_logits = 0) {
        model::Batch batch;
        batch.tokens.assign(ids.begin(), ids.end());
        for (int i = 0; i < static_cast<int>(ids.size()); ++i) {
            batch.positions.push_back(i);
            batch.row_sequence.push_back(0);
            if (i >= first_logits) batch.logits_rows.push_back(i);
        }
        batch.block_tables.emplace_back(table_);
        std::vector<float> out(batch.logits_rows.size() *
                               static_cast<std::size_t>(model_.config().vocab_size));
        model_.forward(batch, *kv_, workspace_, out);
        return out;
    }

  private:
    static constexpr int kBlockTokens = 16;
    const model::Model& model_;
    int blocks_;
    std::unique_ptr<backend::KvStorage> kv_;
    model::Workspace workspace_;
    std::vector<int> table_;
};

// [T, vocab]: the logits of every position of `ids` (T tokens) from one forward pass on a fresh
// cache.
inline std::vector<float> full_logits(const model::Model& model,
                                      std::span<const std::int32_t> ids) {
    return ForwardPass(model, static_cast<int>(ids.size())).logits(ids);
}

// The largest |got - expected| / (1 + |expected|) of two equally long arrays, and its index (a
// NaN counts as larger than any number).
struct WorstError {
    double excess = 0.0;
    std::size_t index = 0;
};
inline WorstError worst_relative_error(std::span<const float> got,
                                       std::span<const float> expected) {
    WorstError worst;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double excess = std::abs(got[i] - expected[i]) / (1.0 + std::abs(expected[i]));
        if (!(excess <= worst.excess)) worst = {excess, i};
    }
    return worst;
}

// Plain argmax decoding of exactly `new_tokens` tokens, EOS ignored: how the reference
// continuations were made.
inline engine::GenerationRequest greedy_request(const std::vector<std::int32_t>& prompt,
                                                int new_tokens) {
    engine::GenerationRequest request;
    request.prompt = prompt;
    request.sampling.temperature = 0.0f;
    request.stop.max_new_tokens = new_tokens;
    request.stop.ignore_eos = true;
    return request;
}

// The token ids a sample generated, in order.
inline std::vector<std::int32_t> tokens_of(const engine::SequenceResult& sequence) {
    std::vector<std::int32_t> tokens;
    for (const engine::GeneratedToken& generated : sequence.tokens)
        tokens.push_back(generated.token);
    return tokens;
}

// The tokens of greedy_request(prompt, new_tokens) run on `engine`.
inline std::vector<std::int32_t> greedy_tokens(engine::Engine& engine,
                                               const std::vector<std::int32_t>& prompt,
                                               int new_tokens) {
    return tokens_of(engine.submit(greedy_request(prompt, new_tokens))->wait().sequences.at(0));
}

// Fatal failure unless `got` has the length of `expected` and equals it token by token up to the
// first step whose reference margin (top-1 minus top-2 logit) is below `margin_floor`: a near-tie
// that rounding may flip, after which the continuations may rightly differ.
inline void expect_greedy_match(const std::vector<std::int32_t>& got,
                                const std::vector<std::int32_t>& expected,
                                const std::vector<double>& margins, double margin_floor) {
    ASSERT_EQ(got.size(), expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        if (i < margins.size() && margins[i] < margin_floor) break;
        ASSERT_EQ(got[i], expected[i]) << "greedy token " << i << " differs (reference margin "
                                       << (i < margins.size() ? margins[i] : NAN) << ")";
    }
}

// The prompts of <dir>.reference.json (next to the model folder `dir`, which `engine` runs with
// `tokenizer`), text in, tokens and text out: each prompt tokenizes to its input_ids, and greedy
// decoding (greedy_request, asking for `logprobs` alternatives when set) matches its
// greedy_new_tokens as expect_greedy_match does, and its greedy_text when every token matched.
inline void expect_reference_continuations(engine::Engine& engine,
                                           const tokenizer::Tokenizer& tokenizer,
                                           const std::filesystem::path& dir, double margin_floor,
                                           std::optional<int> logprobs = std::nullopt) {
    const auto reference = nlohmann::json::parse(
        read_text(dir.parent_path() / (dir.filename().string() + ".reference.json")));
    ASSERT_FALSE(reference.empty());
    for (const nlohmann::json& c : reference) {
        const auto prompt = c.at("prompt").get<std::string>();
        SCOPED_TRACE("prompt '" + prompt + "'");
        const auto ids = tokenizer.encode(prompt);
        ASSERT_EQ(ids, c.at("input_ids").get<std::vector<std::int32_t>>());
        const auto expected = c.at("greedy_new_tokens").get<std::vector<std::int32_t>>();
        engine::GenerationRequest request = greedy_request(ids, static_cast<int>(expected.size()));
        request.sampling.logprobs = logprobs;
        const auto result = engine.submit(std::move(request))->wait();
        const std::vector<std::int32_t> got = tokens_of(result.sequences.at(0));
        expect_greedy_match(got, expected, c.at("greedy_margins").get<std::vector<double>>(),
                            margin_floor);
        if (got == expected) {
            EXPECT_EQ(result.sequences.at(0).text, c.at("greedy_text").get<std::string>());
        }
    }
}

}  // namespace llmserve::testing
