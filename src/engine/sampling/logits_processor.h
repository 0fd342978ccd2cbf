// The logits-processing pipeline: turns one sequence's raw logits row into the row to sample
// from, in place. Removed tokens become -infinity.
#pragma once

#include <span>
#include <vector>

#include "engine/sampling/sampling_params.h"
#include "engine/sampling/sequence_tokens.h"

namespace llmserve::engine {

// A token competing in top_p / typical_p: its ranking key, id and normalised probability.
struct Candidate {
    float key;
    TokenId token;
    float weight;
};

// Holds scratch buffers so that a decode step allocates nothing once warm; keep one per worker
// thread (not per sequence). Not thread-safe.
class LogitsProcessor {
  public:
    // logits: [vocab] float32, the model's output for `history`'s next position. eos_ids: the
    // model's end-of-sequence ids. history must have been built with
    // sampling.no_repeat_ngram_size. Throws kInvalidArgument if a history, bias, ban, EOS or
    // stop id is outside the row, or if every token ends up removed; kInternal if history's
    // n-gram size differs from the params'. For greedy params (is_greedy) the sampling filters
    // (temperature .. typical_p) are skipped: they never change the argmax.
    void process(const SamplingParams& sampling, const StopParams& stop,
                 std::span<const TokenId> eos_ids, const SequenceTokens& history,
                 std::span<float> logits);

  private:
    void apply_top_k(int top_k, std::span<float> logits);
    void apply_top_p(float top_p, std::span<float> logits);
    void apply_typical_p(float typical_p, std::span<float> logits);

    std::vector<float> heap_;            // top_k: the k largest logits
    std::vector<float> weights_;         // top_p / typical_p: exp(logit - max)
    std::vector<Candidate> candidates_;  // top_p / typical_p
};

// One-off convenience over LogitsProcessor::process (allocates its scratch each call).
void process_logits(const SamplingParams& sampling, const StopParams& stop,
                    std::span<const TokenId> eos_ids, const SequenceTokens& history,
                    std::span<float> logits);

}  // namespace llmserve::engine
