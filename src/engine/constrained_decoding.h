// Grammar-constrained decoding inside the engine: the tokenizer's vocabulary as the grammar
// library sees it, and the per-sample state that masks logits and advances with each token.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "grammar/constraint.h"
#include "grammar/vocabulary.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::engine {

// Every token's bytes (Tokenizer::token_bytes: byte-level mapping undone, SentencePiece's "▁"
// as a space and <0xNN> as its byte); special tokens marked so the mask never allows them;
// `eos_ids` allowed exactly where the grammar may end.
grammar::Vocabulary grammar_vocabulary(const tokenizer::Tokenizer& tokenizer,
                                       std::vector<tokenizer::TokenId> eos_ids);

// One sample's position in its request's constraint.
class ConstrainedSample {
  public:
    ConstrainedSample(const grammar::Constraint& constraint, const grammar::Vocabulary& vocabulary)
        : matcher_(constraint), vocabulary_(vocabulary), mask_(vocabulary.mask_words()) {}

    // Sets to -infinity the logits of every token the grammar does not allow next (ids beyond
    // the tokenizer's vocabulary too). Throws Error(kInvalidArgument) when no token is allowed:
    // the grammar needs bytes no token of this vocabulary spells.
    void mask_logits(std::span<float> logits);
    // Advances over a sampled token (EOS leaves the state as it is). Throws Error(kInternal) for
    // a token the mask did not allow.
    void accept(tokenizer::TokenId token, const tokenizer::Tokenizer& tokenizer);
    // The output is a complete sentence and nothing may follow: the sample is done.
    bool complete() const { return matcher_.can_end() && !matcher_.can_continue(); }

  private:
    grammar::Matcher matcher_;
    const grammar::Vocabulary& vocabulary_;
    std::vector<std::uint32_t> mask_;
};

}  // namespace llmserve::engine
