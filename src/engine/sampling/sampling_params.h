// Per-request generation controls (what to sample, when to stop) and their validation.
//
// Every control means what it means in the API it comes from: transformers' generate() for
// temperature/top_k/top_p/min_p/typical_p/repetition_penalty/no_repeat_ngram_size/bad_words_ids/
// min_new_tokens, OpenAI for presence/frequency penalty and logit_bias, vLLM for ignore_eos,
// stop_token_ids and logprobs. Defaults switch every control off.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace llmserve::engine {

using TokenId = std::int32_t;

// Limits enforced by validate(); they bound the per-step cost of the controls.
inline constexpr std::size_t kMaxStopStrings = 16;
inline constexpr std::size_t kMaxStopBytes = 256;
inline constexpr std::size_t kMaxStopTokenIds = 256;
inline constexpr int kMaxLogprobs = 20;
inline constexpr float kMaxTemperature = 100.0f;
// Temperatures in (0, kGreedyTemperature) divide logits towards float overflow; like vLLM, they
// (and 0) mean greedy decoding.
inline constexpr float kGreedyTemperature = 1e-5f;
inline constexpr float kMaxRepetitionPenalty = 100.0f;
// A penalty scales a logit by at most 100 either way. Transformers accepts any positive value, but
// there a penalty near FLT_MIN divides logits to infinity and sampling fails; we refuse it.
inline constexpr float kMinRepetitionPenalty = 1.0f / kMaxRepetitionPenalty;
inline constexpr float kMaxPresenceFrequencyPenalty = 2.0f;
inline constexpr float kMaxLogitBias = 100.0f;  // OpenAI's range is [-100, 100]
inline constexpr int kMaxNoRepeatNgramSize = 128;
inline constexpr std::size_t kMaxBadWords = 1024;
inline constexpr std::size_t kMaxBadWordTokens = 64;

struct SamplingParams {
    float temperature = 1.0f;         // [0, 100]; below kGreedyTemperature => greedy (argmax after
                                      // bias/bans/penalties)
    int top_k = 0;                    // [0, vocab]; 0 = off; ties with the k-th logit are kept
    float top_p = 1.0f;               // (0, 1]; 1 = off
    float min_p = 0.0f;               // [0, 1]; 0 = off
    float typical_p = 1.0f;           // (0, 1]; 1 = off
    float repetition_penalty = 1.0f;  // [0.01, 100]; over prompt + generated ids (transformers)
    float presence_penalty = 0.0f;    // [-2, 2]; over generated ids (OpenAI)
    float frequency_penalty = 0.0f;   // [-2, 2]; over generated ids (OpenAI)
    int no_repeat_ngram_size = 0;     // [0, 128]; 0 = off; over prompt + generated (transformers)
    // (token, bias) added to the logit; ids in [0, vocab), bias finite in [-100, 100], each id
    // once.
    std::vector<std::pair<TokenId, float>> logit_bias;
    // Each entry non-empty, at most kMaxBadWordTokens ids in [0, vocab), at most kMaxBadWords
    // entries. One id: banned at every step. Several: the last id is banned when the sequence ends
    // with the others. As in transformers, an entry that is exactly one EOS id is ignored (EOS is
    // controlled by min_new_tokens / ignore_eos instead).
    std::vector<std::vector<TokenId>> bad_words_ids;
    std::optional<std::uint64_t> seed;  // absent => the engine draws one and reports it
    std::optional<int> logprobs;        // top-N alternatives per generated token, N in [0, 20]
    bool prompt_logprobs = false;
};

struct StopParams {
    int max_new_tokens = 100;       // >= 0; prompt_tokens + max_new_tokens <= n_positions
    int min_new_tokens = 0;         // [0, max_new_tokens]; EOS and stop_token_ids are suppressed
                                    // until this many tokens were generated
    bool ignore_eos = false;        // EOS does not finish the sequence (vLLM); it is not masked
    std::vector<std::string> stop;  // at most kMaxStopStrings, each 1..kMaxStopBytes bytes of
                                    // valid UTF-8
    std::vector<TokenId> stop_token_ids;  // at most kMaxStopTokenIds ids in [0, vocab)
};

// What validate() needs to know about the model and the request around the parameters.
struct ModelLimits {
    int vocab_size = 0;
    int n_positions = 0;    // context window of the model
    int prompt_tokens = 0;  // length of the tokenized prompt; must be >= 1
    int max_n = 16;
    int n = 1;  // number of sequences asked for, in [1, max_n]
};

// Throws llmserve::Error (kInvalidArgument, param() = the offending field name, e.g. "top_p",
// "max_new_tokens", "prompt", "n") with a message naming the field, the allowed range and the
// value. NaN and infinities are rejected everywhere.
void validate(const SamplingParams& sampling, const StopParams& stop, const ModelLimits& limits);

inline bool is_greedy(const SamplingParams& params) {
    return params.temperature < kGreedyTemperature;
}

}  // namespace llmserve::engine
