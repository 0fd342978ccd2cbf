#include "engine/sampling/logits_processor.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "common/error.h"
#include "engine/sampling/vector_math.h"

namespace llmserve::engine {
namespace {

constexpr float kRemoved = -std::numeric_limits<float>::infinity();

// top_p first looks only at tokens within this many nats of the best one: the others hold at
// most vocab * e^-16 / Z (< 0.6% for GPT-2) of the mass, so the window almost always reaches
// top_p and the full row is the rare fallback.
constexpr float kTopPWindow = 16.0f;
// top_p orders its candidates this many at a time (then 4x more each round) instead of sorting
// them all: the kept set is usually a small prefix.
constexpr std::size_t kTopPFirstChunk = 64;

void check_token(TokenId token, std::size_t vocab, const char* role) {
    if (token < 0 || static_cast<std::size_t>(token) >= vocab) {
        fail(ErrorCode::kInvalidArgument,
             "{} token id {} is outside the logits row of {} entries (valid ids: 0..{})", role,
             token, vocab, vocab - 1);
    }
}

bool contains(std::span<const TokenId> ids, TokenId token) {
    return std::find(ids.begin(), ids.end(), token) != ids.end();
}

// Descending logit, then ascending id: a total order, so results never depend on the sort.
bool ranks_before(const std::pair<float, TokenId>& a, const std::pair<float, TokenId>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
}

// Transformers' NoBadWordsLogitsProcessor: the last id of a listed sequence is banned when the
// history ends with the rest of it (always, for one id). Multi-token sequences longer than the
// history are skipped, and a sequence that is exactly one EOS id is ignored.
void apply_bad_words(const std::vector<std::vector<TokenId>>& bad_words,
                     std::span<const TokenId> eos_ids, std::span<const TokenId> history,
                     std::span<float> logits) {
    for (const std::vector<TokenId>& words : bad_words) {
        if (words.empty() || (words.size() > 1 && words.size() > history.size())) continue;
        if (words.size() == 1 && contains(eos_ids, words[0])) continue;
        const std::size_t prefix = words.size() - 1;
        if (std::equal(words.begin(), words.begin() + static_cast<std::ptrdiff_t>(prefix),
                       history.end() - static_cast<std::ptrdiff_t>(prefix))) {
            check_token(words.back(), logits.size(), "bad_words_ids");
            logits[static_cast<std::size_t>(words.back())] = kRemoved;
        }
    }
}

// Transformers' MinPLogitsWarper: removes p < min_p * p_max, i.e. logit - max < log(min_p)
// (the most likely token and its ties always stay).
void apply_min_p(float min_p, std::span<float> logits) {
    const float best = detail::max_value(logits);
    const float log_min_p = std::log(min_p);
    for (float& logit : logits) {
        if (logit - best < log_min_p) logit = kRemoved;
    }
}

}  // namespace

void LogitsProcessor::process(const SamplingParams& sampling, const StopParams& stop,
                              std::span<const TokenId> eos_ids, const SequenceTokens& history,
                              std::span<float> logits) {
    const std::size_t vocab = logits.size();
    if (history.no_repeat_ngram_size() != sampling.no_repeat_ngram_size) {
        fail(ErrorCode::kInternal,
             "SequenceTokens was built for no_repeat_ngram_size {} but the params ask for {}",
             history.no_repeat_ngram_size(), sampling.no_repeat_ngram_size);
    }

    // The order is transformers' _get_logits_processor: sequence bias (our logit_bias),
    // repetition penalty, no_repeat_ngram, bad words, min_new_tokens; then, when sampling,
    // temperature, top_k, top_p, min_p, typical_p.

    // logit_bias: OpenAI's additive bias; transformers' SequenceBiasLogitsProcessor for one-token
    // sequences, which runs first.
    for (const auto& [token, bias] : sampling.logit_bias) {
        check_token(token, vocab, "logit_bias");
        logits[static_cast<std::size_t>(token)] += bias;
    }

    // repetition_penalty over prompt + generated, each distinct id once: positive logits are
    // divided and negative ones multiplied, so a penalty > 1 always makes the token less likely.
    if (sampling.repetition_penalty != 1.0f) {
        const float penalty = sampling.repetition_penalty;
        for (TokenId token : history.distinct_tokens()) {
            check_token(token, vocab, "history");
            float& logit = logits[static_cast<std::size_t>(token)];
            logit = logit < 0.0f ? logit * penalty : logit / penalty;
        }
    }

    // presence/frequency penalties (OpenAI; over generated tokens only) have no transformers
    // counterpart. They sit right after the repetition penalty, before temperature, where vLLM
    // applies all three penalties together: logit -= frequency * count + presence * (count > 0).
    if (sampling.presence_penalty != 0.0f || sampling.frequency_penalty != 0.0f) {
        for (const TokenCount& entry : history.generated_counts()) {
            check_token(entry.token, vocab, "history");
            logits[static_cast<std::size_t>(entry.token)] -=
                sampling.frequency_penalty * static_cast<float>(entry.count) +
                sampling.presence_penalty;
        }
    }

    for (TokenId token : history.ngram_banned_tokens()) {
        check_token(token, vocab, "history");
        logits[static_cast<std::size_t>(token)] = kRemoved;
    }

    apply_bad_words(sampling.bad_words_ids, eos_ids, history.tokens(), logits);

    // min_new_tokens suppresses whatever would end the sequence: stop_token_ids, and EOS unless
    // ignore_eos makes EOS an ordinary token (vLLM's min_tokens).
    if (history.generated_size() < static_cast<std::size_t>(std::max(stop.min_new_tokens, 0))) {
        if (!stop.ignore_eos) {
            for (TokenId token : eos_ids) {
                check_token(token, vocab, "EOS");
                logits[static_cast<std::size_t>(token)] = kRemoved;
            }
        }
        for (TokenId token : stop.stop_token_ids) {
            check_token(token, vocab, "stop_token_ids");
            logits[static_cast<std::size_t>(token)] = kRemoved;
        }
    }

    if (!is_greedy(sampling)) {
        if (sampling.temperature != 1.0f) {
            const float temperature = sampling.temperature;
            for (float& logit : logits) logit /= temperature;
        }
        if (sampling.top_k > 0 && static_cast<std::size_t>(sampling.top_k) < vocab) {
            apply_top_k(sampling.top_k, logits);
        }
        if (sampling.top_p < 1.0f) apply_top_p(sampling.top_p, logits);
        if (sampling.min_p > 0.0f) apply_min_p(sampling.min_p, logits);
        if (sampling.typical_p < 1.0f) apply_typical_p(sampling.typical_p, logits);
    }

    if (detail::max_value(logits) == kRemoved) {
        fail(ErrorCode::kInvalidArgument,
             "every token of the {}-entry vocabulary is banned (bad_words_ids, "
             "no_repeat_ngram_size, min_new_tokens and logit_bias together): nothing can be "
             "generated",
             vocab);
    }
}

// Transformers' TopKLogitsWarper: removes logits below the k-th largest (ties with it stay).
// A size-k min-heap finds that value in one pass; most logits lose one comparison to its top.
void LogitsProcessor::apply_top_k(int top_k, std::span<float> logits) {
    const std::size_t k = static_cast<std::size_t>(top_k);
    heap_.assign(logits.begin(), logits.begin() + static_cast<std::ptrdiff_t>(k));
    std::make_heap(heap_.begin(), heap_.end(), std::greater<>());
    for (std::size_t i = k; i < logits.size(); ++i) {
        if (logits[i] > heap_.front()) {
            std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
            heap_.back() = logits[i];
            std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
        }
    }
    const float kth_largest = heap_.front();
    for (float& logit : logits) {
        if (logit < kth_largest) logit = kRemoved;
    }
}

// Transformers' TopPLogitsWarper: sorting ascending, it removes tokens whose cumulative
// probability is <= 1 - top_p. In descending order that keeps each token whose predecessors
// hold less than top_p of the mass (so the most likely token always stays). At exactly equal
// logits the lower id ranks first (transformers leaves that order to torch.sort).
void LogitsProcessor::apply_top_p(float top_p, std::span<float> logits) {
    const float best = detail::max_value(logits);
    if (best == kRemoved) return;
    const double total = detail::sum_exp(logits, best);

    auto collect = [&](float floor) {
        candidates_.clear();
        double mass = 0.0;
        for (std::size_t i = 0; i < logits.size(); ++i) {
            if (logits[i] >= floor) {
                candidates_.emplace_back(logits[i], static_cast<TokenId>(i));
                mass += detail::exp_nonpositive(logits[i] - best);
            }
        }
        return mass / total;
    };
    if (collect(best - kTopPWindow) < top_p) {
        collect(std::numeric_limits<float>::lowest());  // every finite logit
    }

    // Order the candidates a chunk at a time until the kept prefix ends.
    const std::size_t count = candidates_.size();
    std::size_t kept = count;
    double mass_before = 0.0;
    std::size_t begin = 0;
    std::size_t chunk = kTopPFirstChunk;
    const auto at = [&](std::size_t i) {
        return candidates_.begin() + static_cast<std::ptrdiff_t>(i);
    };
    while (begin < count && kept == count) {
        const std::size_t end = std::min(count, begin + chunk);
        if (end < count) std::nth_element(at(begin), at(end), candidates_.end(), ranks_before);
        std::sort(at(begin), at(end), ranks_before);
        for (std::size_t i = begin; i < end; ++i) {
            if (mass_before >= top_p) {
                kept = i;
                break;
            }
            mass_before += detail::exp_nonpositive(candidates_[i].first - best) / total;
        }
        begin = end;
        chunk *= 4;
    }

    const std::pair<float, TokenId> last_kept = candidates_[kept - 1];
    for (std::size_t i = 0; i < logits.size(); ++i) {
        if (ranks_before(last_kept, {logits[i], static_cast<TokenId>(i)})) logits[i] = kRemoved;
    }
}

// Transformers' TypicalLogitsWarper: ranks tokens by |-log p - H| (H = entropy), keeps the
// smallest such prefix whose mass reaches typical_p (plus ties of its last score). The ranking
// is not by logit, so this one sorts every finite token.
void LogitsProcessor::apply_typical_p(float typical_p, std::span<float> logits) {
    const float best = detail::max_value(logits);
    if (best == kRemoved) return;
    const double total = detail::sum_exp(logits, best);
    const double log_total = std::log(total);

    candidates_.clear();
    probs_.assign(logits.size(), 0.0f);
    double entropy = 0.0;
    for (std::size_t i = 0; i < logits.size(); ++i) {
        if (logits[i] == kRemoved) continue;
        const double log_prob = static_cast<double>(logits[i] - best) - log_total;
        const double prob = detail::exp_nonpositive(logits[i] - best) / total;
        probs_[i] = static_cast<float>(prob);
        entropy -= prob * log_prob;
        candidates_.emplace_back(0.0f, static_cast<TokenId>(i));
    }
    for (auto& [score, token] : candidates_) {
        const double log_prob =
            static_cast<double>(logits[static_cast<std::size_t>(token)] - best) - log_total;
        score = static_cast<float>(std::abs(-log_prob - entropy));
    }
    std::sort(candidates_.begin(), candidates_.end(), [](const auto& a, const auto& b) {
        return a.first < b.first || (a.first == b.first && a.second < b.second);
    });

    // last = number of tokens whose cumulative mass stays below typical_p (the first token that
    // reaches it is kept too); clamped to the last candidate.
    std::size_t last = 0;
    double cumulative = 0.0;
    for (const auto& [score, token] : candidates_) {
        cumulative += probs_[static_cast<std::size_t>(token)];
        if (!(cumulative < typical_p)) break;
        ++last;
    }
    last = std::min(last, candidates_.size() - 1);
    const float max_score = candidates_[last].first;
    for (std::size_t i = last + 1; i < candidates_.size(); ++i) {
        if (candidates_[i].first > max_score) {
            logits[static_cast<std::size_t>(candidates_[i].second)] = kRemoved;
        }
    }
}

void process_logits(const SamplingParams& sampling, const StopParams& stop,
                    std::span<const TokenId> eos_ids, const SequenceTokens& history,
                    std::span<float> logits) {
    LogitsProcessor processor;
    processor.process(sampling, stop, eos_ids, history, logits);
}

}  // namespace llmserve::engine
