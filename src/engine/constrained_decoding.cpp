#include "engine/constrained_decoding.h"

#include <algorithm>
#include <limits>

#include "common/error.h"

namespace llmserve::engine {

grammar::Vocabulary grammar_vocabulary(const tokenizer::Tokenizer& tokenizer,
                                       std::vector<tokenizer::TokenId> eos_ids) {
    const std::size_t size = tokenizer.vocab_size();
    std::vector<std::string> bytes(size);
    std::vector<bool> special(size, false);
    for (std::size_t id = 0; id < size; ++id) {
        const auto token = static_cast<tokenizer::TokenId>(id);
        special[id] = tokenizer.is_special(token);
        try {
            bytes[id] = std::string(tokenizer.token_bytes(token));
        } catch (const Error&) {
            // An id with no token (a gap in the vocabulary): left empty, so never allowed.
        }
    }
    std::erase_if(eos_ids, [size](tokenizer::TokenId id) {
        return id < 0 || static_cast<std::size_t>(id) >= size;
    });
    return grammar::Vocabulary(bytes, special, std::move(eos_ids));
}

void ConstrainedSample::mask_logits(std::span<float> logits) {
    matcher_.fill_mask(vocabulary_, mask_);
    constexpr float kRemoved = -std::numeric_limits<float>::infinity();
    bool any = false;
    const std::size_t covered = std::min(logits.size(), mask_.size() * 32);
    for (std::size_t word = 0; word * 32 < covered; ++word) {
        const std::size_t end = std::min(covered, (word + 1) * 32);
        const std::uint32_t bits = mask_[word];
        // Only ids the model has count: a mask allowing just ids past its logits allows nothing.
        const std::uint32_t in_range = end - word * 32 == 32 ? ~0u : (1u << (end - word * 32)) - 1;
        any = any || (bits & in_range) != 0;
        if (bits == ~0u) continue;
        for (std::size_t id = word * 32; id < end; ++id)
            if (!((bits >> (id & 31)) & 1u)) logits[id] = kRemoved;
    }
    std::fill(logits.begin() + covered, logits.end(), kRemoved);
    if (!any)
        fail(ErrorCode::kInvalidArgument,
             "the output constraint cannot be continued: no token of this model's vocabulary "
             "spells what the grammar requires next");
}

void ConstrainedSample::accept(tokenizer::TokenId token, const tokenizer::Tokenizer& tokenizer) {
    const auto& eos = vocabulary_.eos_ids();
    if (std::find(eos.begin(), eos.end(), token) != eos.end()) return;
    if (!matcher_.accept(tokenizer.token_bytes(token)))
        fail(ErrorCode::kInternal, "sampled token {} is not allowed by the output constraint",
             token);
}

}  // namespace llmserve::engine
