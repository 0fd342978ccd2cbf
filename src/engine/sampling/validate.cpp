// validate(): every request-level rule for SamplingParams and StopParams in one place. Each
// failure names the field (Error::param() and the message), the allowed range and the value.
#include <cmath>
#include <cstdint>
#include <unordered_set>

#include "common/error.h"
#include "engine/sampling/sampling_params.h"
#include "engine/sampling/stop_matcher.h"

namespace llmserve::engine {
namespace {

// `value` must be finite and within [low, high] (or (low, high] when low is open).
void check_range(const char* field, float value, float low, float high, bool low_open = false) {
    const bool in_range =
        std::isfinite(value) && (low_open ? value > low : value >= low) && value <= high;
    if (!in_range) {
        fail_param(field, "{} must be in {}{}, {}], got {}", field, low_open ? "(" : "[", low, high,
                   value);
    }
}

void check_range(const char* field, int value, int low, int high) {
    if (value < low || value > high) {
        fail_param(field, "{} must be in [{}, {}], got {}", field, low, high, value);
    }
}

void check_token(const char* field, const std::string& where, TokenId token, int vocab_size) {
    if (token < 0 || token >= vocab_size) {
        fail_param(field, "{} = {} is not a token id of this model (valid ids: 0..{})", where,
                   token, vocab_size - 1);
    }
}

void validate_sampling(const SamplingParams& p, int vocab_size, int n_positions) {
    check_range("temperature", p.temperature, 0.0f, kMaxTemperature);
    check_range("top_k", p.top_k, 0, vocab_size);
    check_range("top_p", p.top_p, 0.0f, 1.0f, /*low_open=*/true);
    check_range("min_p", p.min_p, 0.0f, 1.0f);
    check_range("typical_p", p.typical_p, 0.0f, 1.0f, /*low_open=*/true);
    check_range("repetition_penalty", p.repetition_penalty, kMinRepetitionPenalty,
                kMaxRepetitionPenalty);
    check_range("presence_penalty", p.presence_penalty, -kMaxPresenceFrequencyPenalty,
                kMaxPresenceFrequencyPenalty);
    check_range("frequency_penalty", p.frequency_penalty, -kMaxPresenceFrequencyPenalty,
                kMaxPresenceFrequencyPenalty);
    check_range("no_repeat_ngram_size", p.no_repeat_ngram_size, 0,
                std::min(kMaxNoRepeatNgramSize, n_positions));

    std::unordered_set<TokenId> biased;
    for (const auto& [token, bias] : p.logit_bias) {
        check_token("logit_bias", "logit_bias token id", token, vocab_size);
        if (!biased.insert(token).second) {
            fail_param("logit_bias", "logit_bias lists token id {} more than once", token);
        }
        if (!std::isfinite(bias) || bias < -kMaxLogitBias || bias > kMaxLogitBias) {
            fail_param("logit_bias", "logit_bias for token id {} must be in [{}, {}], got {}",
                       token, -kMaxLogitBias, kMaxLogitBias, bias);
        }
    }

    if (p.bad_words_ids.size() > kMaxBadWords) {
        fail_param("bad_words_ids", "bad_words_ids may hold at most {} sequences, got {}",
                   kMaxBadWords, p.bad_words_ids.size());
    }
    for (std::size_t i = 0; i < p.bad_words_ids.size(); ++i) {
        const std::vector<TokenId>& words = p.bad_words_ids[i];
        if (words.empty() || words.size() > kMaxBadWordTokens) {
            fail_param("bad_words_ids", "bad_words_ids[{}] must hold 1 to {} token ids, got {}", i,
                       kMaxBadWordTokens, words.size());
        }
        for (std::size_t j = 0; j < words.size(); ++j) {
            check_token("bad_words_ids", fmt::format("bad_words_ids[{}][{}]", i, j), words[j],
                        vocab_size);
        }
    }

    if (p.logprobs) check_range("logprobs", *p.logprobs, 0, kMaxLogprobs);
}

void validate_stop(const StopParams& s, int vocab_size) {
    if (s.max_new_tokens < 0) {
        fail_param("max_new_tokens", "max_new_tokens must be >= 0, got {}", s.max_new_tokens);
    }
    check_range("min_new_tokens", s.min_new_tokens, 0, s.max_new_tokens);
    check_stop_strings(s.stop);
    if (s.stop_token_ids.size() > kMaxStopTokenIds) {
        fail_param("stop_token_ids", "stop_token_ids may hold at most {} ids, got {}",
                   kMaxStopTokenIds, s.stop_token_ids.size());
    }
    for (std::size_t i = 0; i < s.stop_token_ids.size(); ++i) {
        check_token("stop_token_ids", fmt::format("stop_token_ids[{}]", i), s.stop_token_ids[i],
                    vocab_size);
    }
}

}  // namespace

void validate(const SamplingParams& sampling, const StopParams& stop, const ModelLimits& limits) {
    if (limits.vocab_size < 1 || limits.n_positions < 1 || limits.max_n < 1) {
        fail(ErrorCode::kInternal,
             "ModelLimits must have vocab_size, n_positions and max_n >= 1, got {}, {}, {}",
             limits.vocab_size, limits.n_positions, limits.max_n);
    }
    check_range("n", limits.n, 1, limits.max_n);
    validate_sampling(sampling, limits.vocab_size, limits.n_positions);
    validate_stop(stop, limits.vocab_size);

    if (limits.prompt_tokens < 1) {
        fail_param("prompt", "prompt must hold at least 1 token, got {}", limits.prompt_tokens);
    }
    if (limits.prompt_tokens >= limits.n_positions) {
        fail_param("prompt",
                   "prompt has {} tokens but the model's context window is {} tokens; the prompt "
                   "must leave room for generation (at most {} tokens)",
                   limits.prompt_tokens, limits.n_positions, limits.n_positions - 1);
    }
    const std::int64_t total =
        static_cast<std::int64_t>(limits.prompt_tokens) + stop.max_new_tokens;
    if (total > limits.n_positions) {
        fail_param("max_new_tokens",
                   "max_new_tokens {} plus the prompt's {} tokens is {}, more than the model's "
                   "context window of {} tokens (max_new_tokens can be at most {})",
                   stop.max_new_tokens, limits.prompt_tokens, total, limits.n_positions,
                   limits.n_positions - limits.prompt_tokens);
    }
}

}  // namespace llmserve::engine
