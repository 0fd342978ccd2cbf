// The token history of one sequence, kept in the forms the logits processors need so that each
// decode step costs O(distinct tokens) at most, never a rescan of the whole history.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/sampling/sampling_params.h"

namespace llmserve::engine {

struct TokenCount {
    TokenId token;
    int count;
};

class SequenceTokens {
  public:
    // `no_repeat_ngram_size` must be the sequence's SamplingParams::no_repeat_ngram_size (0 keeps
    // no n-gram table). Token ids are not range-checked here; process_logits checks them against
    // the logits row.
    explicit SequenceTokens(std::span<const TokenId> prompt, int no_repeat_ngram_size = 0);

    // Records one generated token. O(no_repeat_ngram_size) expected.
    void append(TokenId token);

    std::span<const TokenId> tokens() const { return tokens_; }  // prompt followed by generated
    std::size_t prompt_size() const { return prompt_size_; }
    std::size_t generated_size() const { return tokens_.size() - prompt_size_; }
    int no_repeat_ngram_size() const { return ngram_size_; }

    // Every distinct id of prompt + generated, in first-seen order (repetition penalty).
    std::span<const TokenId> distinct_tokens() const { return distinct_; }
    // Every distinct generated id with its number of occurrences (presence/frequency penalty).
    std::span<const TokenCount> generated_counts() const { return generated_counts_; }
    // Tokens that would complete an n-gram already present in prompt + generated, i.e. the
    // successors of every earlier occurrence of the last (n - 1) tokens.
    std::span<const TokenId> ngram_banned_tokens() const;

  private:
    void record(TokenId token, bool generated);
    // Bytes of the `ngram_size_ - 1` tokens ending just before position `end`.
    std::string ngram_prefix_key(std::size_t end) const;

    std::vector<TokenId> tokens_;
    std::size_t prompt_size_ = 0;
    int ngram_size_ = 0;

    std::vector<TokenId> distinct_;
    std::unordered_set<TokenId> distinct_set_;
    std::vector<TokenCount> generated_counts_;
    std::unordered_map<TokenId, std::size_t> generated_index_;  // token -> generated_counts_ slot
    // (n - 1)-gram -> distinct tokens that followed it. Unused for n = 1, where the banned set
    // is distinct_.
    std::unordered_map<std::string, std::vector<TokenId>> ngram_successors_;
};

}  // namespace llmserve::engine
