#include "engine/sampling/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "common/error.h"
#include "engine/sampling/vector_math.h"

namespace llmserve::engine {
namespace {

// log of the softmax normaliser, max + log(sum exp(x - max)).
float log_normalizer(std::span<const float> raw_logits) {
    const float best = detail::max_value(raw_logits);
    if (best == -std::numeric_limits<float>::infinity()) {
        fail(ErrorCode::kInvalidArgument,
             "cannot compute logprobs: none of the {} logits is finite", raw_logits.size());
    }
    return best + static_cast<float>(std::log(detail::sum_exp(raw_logits, best)));
}

void check_token(std::span<const float> raw_logits, TokenId token) {
    if (token < 0 || static_cast<std::size_t>(token) >= raw_logits.size()) {
        fail(ErrorCode::kInvalidArgument,
             "logprob asked for token id {} outside the logits row of {} entries", token,
             raw_logits.size());
    }
}

std::vector<TokenLogprob> top_with_normalizer(std::span<const float> raw_logits, int n,
                                              float normalizer) {
    if (n < 0 || static_cast<std::size_t>(n) > raw_logits.size()) {
        fail(ErrorCode::kInvalidArgument, "logprobs count must be in [0, {}], got {}",
             raw_logits.size(), n);
    }
    // Higher logit first, then lower id: a strict total order over the row.
    const auto better = [](const std::pair<float, TokenId>& a, const std::pair<float, TokenId>& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    // `better` as the heap order keeps the worst of the current top n at the front.
    std::vector<std::pair<float, TokenId>> heap;
    const auto wanted = static_cast<std::size_t>(n);
    for (std::size_t begin = 0; begin < raw_logits.size() && wanted > 0; begin += detail::kBlock) {
        const std::size_t end = std::min(raw_logits.size(), begin + detail::kBlock);
        // Later ids lose ties, so a block whose best logit does not beat the current n-th is
        // skipped whole (one vectorised max).
        if (heap.size() == wanted &&
            !(detail::max_value(raw_logits.subspan(begin, end - begin)) > heap.front().first)) {
            continue;
        }
        for (std::size_t i = begin; i < end; ++i) {
            if (std::isnan(raw_logits[i])) continue;  // NaN would break the heap's ordering
            const std::pair<float, TokenId> entry{raw_logits[i], static_cast<TokenId>(i)};
            if (heap.size() < wanted) {
                heap.push_back(entry);
                std::push_heap(heap.begin(), heap.end(), better);
            } else if (better(entry, heap.front())) {
                std::pop_heap(heap.begin(), heap.end(), better);
                heap.back() = entry;
                std::push_heap(heap.begin(), heap.end(), better);
            }
        }
    }
    std::sort(heap.begin(), heap.end(), better);
    std::vector<TokenLogprob> top;
    top.reserve(heap.size());
    for (const auto& [logit, token] : heap) top.push_back({token, logit - normalizer});
    return top;
}

}  // namespace

std::vector<TokenLogprob> top_logprobs(std::span<const float> raw_logits, int n) {
    return top_with_normalizer(raw_logits, n, log_normalizer(raw_logits));
}

float token_logprob(std::span<const float> raw_logits, TokenId token) {
    check_token(raw_logits, token);
    return raw_logits[static_cast<std::size_t>(token)] - log_normalizer(raw_logits);
}

StepLogprobs step_logprobs(std::span<const float> raw_logits, TokenId chosen, int n) {
    check_token(raw_logits, chosen);
    const float normalizer = log_normalizer(raw_logits);
    return {{chosen, raw_logits[static_cast<std::size_t>(chosen)] - normalizer},
            top_with_normalizer(raw_logits, n, normalizer)};
}

}  // namespace llmserve::engine
