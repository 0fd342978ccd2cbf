// Log-probabilities reported to the client (OpenAI `logprobs`, vLLM `prompt_logprobs`).
//
// They are the log-softmax of the model's own distribution: the raw logits row, before logit
// bias, penalties, bans, temperature and the top-k/top-p/min-p/typical filters (what vLLM and
// OpenAI report by default). The engine must therefore call these on the row as the model
// produced it, i.e. before LogitsProcessor::process rewrites it in place (keep a copy when the
// request asks for logprobs).
#pragma once

#include <span>
#include <vector>

#include "engine/sampling/sampling_params.h"

namespace llmserve::engine {

struct TokenLogprob {
    TokenId token;
    float logprob;
};

struct StepLogprobs {
    TokenLogprob chosen;
    std::vector<TokenLogprob> top;  // the n most likely, most likely first
};

// The `n` (0..vocab) most likely tokens of raw_logits, most likely first; equal logits: lower id
// first. Throws kInvalidArgument for n outside [0, vocab] or a row with no finite logit.
std::vector<TokenLogprob> top_logprobs(std::span<const float> raw_logits, int n);

// log p(token) under raw_logits. Throws kInvalidArgument for a token outside the row.
float token_logprob(std::span<const float> raw_logits, TokenId token);

// Both of the above with one normalisation pass: the sampled token and the top n alternatives.
StepLogprobs step_logprobs(std::span<const float> raw_logits, TokenId chosen, int n);

}  // namespace llmserve::engine
