#include "engine/sampling/sequence_tokens.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"

namespace llmserve::engine {

SequenceTokens::SequenceTokens(std::span<const TokenId> prompt, int no_repeat_ngram_size)
    : ngram_size_(no_repeat_ngram_size) {
    if (no_repeat_ngram_size < 0 || no_repeat_ngram_size > kMaxNoRepeatNgramSize) {
        fail_param("no_repeat_ngram_size", "no_repeat_ngram_size must be in [0, {}], got {}",
                   kMaxNoRepeatNgramSize, no_repeat_ngram_size);
    }
    tokens_.reserve(prompt.size());
    for (TokenId token : prompt) record(token, /*generated=*/false);
    prompt_size_ = prompt.size();
}

void SequenceTokens::append(TokenId token) {
    record(token, /*generated=*/true);
}

void SequenceTokens::record(TokenId token, bool generated) {
    tokens_.push_back(token);
    if (distinct_set_.insert(token).second) distinct_.push_back(token);
    if (generated) {
        const auto [slot, inserted] = generated_index_.try_emplace(token, generated_counts_.size());
        if (inserted) {
            generated_counts_.push_back({token, 1});
        } else {
            ++generated_counts_[slot->second].count;
        }
    }
    // The n-gram that `token` completes: its (n - 1) predecessors map to it.
    if (ngram_size_ >= 2 && tokens_.size() >= static_cast<std::size_t>(ngram_size_)) {
        std::vector<TokenId>& successors = ngram_successors_[ngram_prefix_key(tokens_.size() - 1)];
        if (std::find(successors.begin(), successors.end(), token) == successors.end()) {
            successors.push_back(token);
        }
    }
}

std::string SequenceTokens::ngram_prefix_key(std::size_t end) const {
    const std::size_t length = static_cast<std::size_t>(ngram_size_ - 1);
    std::string key(length * sizeof(TokenId), '\0');
    std::memcpy(key.data(), tokens_.data() + (end - length), key.size());
    return key;
}

std::span<const TokenId> SequenceTokens::ngram_banned_tokens() const {
    if (ngram_size_ == 0) return {};
    // As in transformers: nothing is banned before one full n-gram exists.
    if (tokens_.size() < static_cast<std::size_t>(ngram_size_)) return {};
    if (ngram_size_ == 1) return distinct_;
    const auto found = ngram_successors_.find(ngram_prefix_key(tokens_.size()));
    if (found == ngram_successors_.end()) return {};
    return found->second;
}

}  // namespace llmserve::engine
