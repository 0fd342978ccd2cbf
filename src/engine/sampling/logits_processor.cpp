#include "engine/sampling/logits_processor.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>

#include "common/error.h"
#include "engine/sampling/vector_math.h"

namespace llmserve::engine {
namespace {

constexpr float kRemoved = -std::numeric_limits<float>::infinity();

// top_p looks for its kept set among the tokens within the narrowest of these windows below the
// best logit (as weights exp(-window)) that holds top_p of the mass; the full row is the fallback.
constexpr std::array<float, detail::kMassThresholds> kTopPWindowWeights = {
    1.3533528e-1f,  // e^-2
    1.8315639e-2f,  // e^-4
    3.3546263e-4f,  // e^-8
    1.1253517e-7f,  // e^-16
};

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

// Ranked by descending key, then ascending id: a total order, so results never depend on how the
// candidates were shuffled.
bool ranks_before(const Candidate& a, const Candidate& b) {
    return a.key > b.key || (a.key == b.key && a.token < b.token);
}

// Below this many candidates select_mass_prefix simply sorts what is left.
constexpr std::size_t kSortBelow = 64;

// Returns `kept`, the number of candidates (in rank order) whose preceding weight is below
// `target`, and reorders `candidates` so that exactly those come first (in no particular order),
// then the rest. A quickselect on weight: expected O(n), no full sort. (top_p keeps these;
// typical_p's "last index" is kept - 1.)
std::size_t select_mass_prefix(std::span<Candidate> candidates, double target) {
    std::size_t low = 0;
    std::size_t high = candidates.size();
    double before = 0.0;  // weight of the candidates known to rank before [low, high)
    const auto at = [&](std::size_t i) {
        return candidates.begin() + static_cast<std::ptrdiff_t>(i);
    };
    while (high - low > kSortBelow) {
        // Median of three as the pivot; every candidate is distinct, so it splits the range.
        Candidate first = candidates[low];
        Candidate middle = candidates[low + (high - low) / 2];
        Candidate last = candidates[high - 1];
        if (ranks_before(middle, first)) std::swap(middle, first);
        if (ranks_before(last, middle)) std::swap(last, middle);
        if (ranks_before(middle, first)) std::swap(middle, first);
        const Candidate pivot = middle;
        const auto split = std::partition(
            at(low), at(high), [&](const Candidate& c) { return ranks_before(c, pivot); });
        const auto split_index = static_cast<std::size_t>(split - candidates.begin());
        double upper = 0.0;
        for (std::size_t i = low; i < split_index; ++i) upper += candidates[i].weight;
        if (before + upper >= target) {
            high = split_index;  // the boundary is at or before the pivot
            continue;
        }
        before += upper;
        // The pivot ranks first among the rest: move it to split_index.
        std::iter_swap(split, std::find_if(split, at(high), [&](const Candidate& c) {
                           return c.token == pivot.token;
                       }));
        if (before >= target) return split_index;
        before += pivot.weight;
        low = split_index + 1;
    }
    std::sort(at(low), at(high), ranks_before);
    for (std::size_t i = low; i < high; ++i) {
        if (before >= target) return i;
        before += candidates[i].weight;
    }
    return high;
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

// Transformers' MinPLogitsWarper: removes p < min_p * p_max, i.e. logit < max + log(min_p)
// (the most likely token and its ties always stay).
void apply_min_p(float min_p, std::span<float> logits) {
    const float best = detail::max_value(logits);
    detail::remove_where_below(logits, logits, best + std::log(min_p));
}

// Calls visit(i) for the indices of `values` in order, skipping whole blocks whose maximum is not
// above floor() (re-read per block, so a caller may raise it as it goes). The blocks cost one
// vectorised max each; rows where few entries pass are scanned at that speed.
template <typename Floor, typename Visit>
void scan_above(std::span<const float> values, Floor floor, Visit visit) {
    for (std::size_t begin = 0; begin < values.size(); begin += detail::kBlock) {
        const std::size_t end = std::min(values.size(), begin + detail::kBlock);
        if (!(detail::max_value(values.subspan(begin, end - begin)) > floor())) continue;
        for (std::size_t i = begin; i < end; ++i) visit(i);
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

    const std::span<const TokenId> ngram_banned = history.ngram_banned_tokens();
    for (TokenId token : ngram_banned) {
        check_token(token, vocab, "history");
        logits[static_cast<std::size_t>(token)] = kRemoved;
    }

    apply_bad_words(sampling.bad_words_ids, eos_ids, history.tokens(), logits);

    // min_new_tokens suppresses whatever would end the sequence: stop_token_ids, and EOS unless
    // ignore_eos makes EOS an ordinary token (vLLM's min_tokens).
    const bool suppress_endings =
        history.generated_size() < static_cast<std::size_t>(std::max(stop.min_new_tokens, 0));
    if (suppress_endings) {
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

    // Only the steps above can remove every token (the filters below always keep the best one),
    // so the row is checked here, and only when one of them could have removed something.
    const bool may_have_removed_all = !sampling.logit_bias.empty() || !ngram_banned.empty() ||
                                      !sampling.bad_words_ids.empty() || suppress_endings;
    if (may_have_removed_all && detail::max_value(logits) == kRemoved) {
        fail(ErrorCode::kInvalidArgument,
             "every token of the {}-entry vocabulary is banned (bad_words_ids, "
             "no_repeat_ngram_size, min_new_tokens and logit_bias together): nothing can be "
             "generated",
             vocab);
    }

    if (is_greedy(sampling)) return;
    if (sampling.temperature != 1.0f) detail::divide(logits, sampling.temperature);
    if (sampling.top_k > 0 && static_cast<std::size_t>(sampling.top_k) < vocab) {
        apply_top_k(sampling.top_k, logits);
    }
    if (sampling.top_p < 1.0f) apply_top_p(sampling.top_p, logits);
    if (sampling.min_p > 0.0f) apply_min_p(sampling.min_p, logits);
    if (sampling.typical_p < 1.0f) apply_typical_p(sampling.typical_p, logits);
}

// Transformers' TopKLogitsWarper: removes logits below the k-th largest (ties with it stay).
// A size-k min-heap finds that value in one pass; blocks with nothing above its top are skipped.
void LogitsProcessor::apply_top_k(int top_k, std::span<float> logits) {
    const std::size_t k = static_cast<std::size_t>(top_k);
    heap_.clear();
    const auto kth_largest = [&] { return heap_.size() < k ? kRemoved : heap_.front(); };
    scan_above(logits, kth_largest, [&](std::size_t i) {
        if (heap_.size() < k) {
            heap_.push_back(logits[i]);
            std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
        } else if (logits[i] > heap_.front()) {
            std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
            heap_.back() = logits[i];
            std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
        }
    });
    detail::remove_where_below(logits, logits, kth_largest());
}

// Transformers' TopPLogitsWarper: sorting ascending, it removes tokens whose cumulative
// probability is <= 1 - top_p. In descending order that keeps each token whose predecessors
// hold less than top_p of the mass (so the most likely token always stays). At exactly equal
// logits the lower id ranks first (transformers leaves that order to torch.sort).
//
// Rather than sorting the row, it finds the narrowest window below the best logit that holds
// top_p of the mass (one vectorised pass over the weights for all windows), collects only the
// tokens inside it and quickselects the kept prefix among those.
void LogitsProcessor::apply_top_p(float top_p, std::span<float> logits) {
    const float best = detail::max_value(logits);
    if (best == kRemoved) return;
    weights_.resize(logits.size());
    const double total = detail::exp_row(logits, best, weights_);
    const std::span<const float> weights(weights_);

    std::array<double, detail::kMassThresholds> window_masses;
    detail::masses_at_least(weights, kTopPWindowWeights, window_masses);
    // The margin covers the different summation order of the walk below.
    const double needed = top_p * total * (1.0 + 1e-6);
    float floor = std::numeric_limits<float>::min();  // fallback: every token of non-zero weight
    for (std::size_t k = 0; k < window_masses.size(); ++k) {
        if (window_masses[k] >= needed) {
            floor = kTopPWindowWeights[k];
            break;
        }
    }
    candidates_.clear();
    scan_above(
        weights, [&] { return std::nextafter(floor, 0.0f); },
        [&](std::size_t i) {
            if (weights[i] >= floor) {
                candidates_.push_back(
                    {logits[i], static_cast<TokenId>(i), static_cast<float>(weights[i] / total)});
            }
        });
    const std::size_t kept = select_mass_prefix(candidates_, top_p);

    // Tokens outside the window rank after every candidate; candidates past the kept prefix go
    // one by one.
    detail::remove_where_below(logits, weights, floor);
    for (std::size_t i = kept; i < candidates_.size(); ++i) {
        logits[static_cast<std::size_t>(candidates_[i].token)] = kRemoved;
    }
}

// Transformers' TypicalLogitsWarper: ranks tokens by |-log p - H| (H = entropy) ascending and
// finds the first rank whose cumulative mass (itself included) reaches typical_p; tokens scoring
// above that one are removed (ties with it stay). Every finite token is a candidate here (the
// ranking is not by logit), still selected in expected linear time.
void LogitsProcessor::apply_typical_p(float typical_p, std::span<float> logits) {
    const float best = detail::max_value(logits);
    if (best == kRemoved) return;
    weights_.resize(logits.size());
    const double total = detail::exp_row(logits, best, weights_);
    const double log_total = std::log(total);

    double entropy = 0.0;
    for (std::size_t i = 0; i < logits.size(); ++i) {
        if (weights_[i] == 0.0f) continue;
        const double log_prob = static_cast<double>(logits[i] - best) - log_total;
        entropy -= weights_[i] / total * log_prob;
    }
    candidates_.clear();
    for (std::size_t i = 0; i < logits.size(); ++i) {
        if (logits[i] == kRemoved) continue;
        const double log_prob = static_cast<double>(logits[i] - best) - log_total;
        // key = -score, so that ranking by descending key ranks by ascending score.
        candidates_.push_back({-static_cast<float>(std::abs(-log_prob - entropy)),
                               static_cast<TokenId>(i), static_cast<float>(weights_[i] / total)});
    }
    if (candidates_.empty()) return;

    const std::size_t kept = select_mass_prefix(candidates_, typical_p);
    const auto kept_end = candidates_.begin() + static_cast<std::ptrdiff_t>(kept);
    const float last_key = std::max_element(candidates_.begin(), kept_end, ranks_before)->key;
    for (auto it = kept_end; it != candidates_.end(); ++it) {
        if (it->key < last_key) logits[static_cast<std::size_t>(it->token)] = kRemoved;
    }
}

void process_logits(const SamplingParams& sampling, const StopParams& stop,
                    std::span<const TokenId> eos_ids, const SequenceTokens& history,
                    std::span<float> logits) {
    LogitsProcessor processor;
    processor.process(sampling, stop, eos_ids, history, logits);
}

}  // namespace llmserve::engine
