// Reading tokenizer.json's normalizer, pre_tokenizer, post_processor and decoder into the
// pipeline's steps. Anything this code cannot reproduce exactly is refused (kUnsupported) with
// the component's path in the file named, never approximated.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/decoder.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/tokenizer_state.h"

namespace llmserve::tokenizer {

struct PreTokenizerSpec {
    std::vector<PreTokenizerStep> steps;
    bool byte_level = false;  // a ByteLevel step maps the pieces to the byte-level alphabet
};

// One token the post-processor adds, by its name in the file and the ids it stands for.
struct PostProcessorTokens {
    std::vector<TokenId> prefix;
    std::vector<TokenId> suffix;
};

std::vector<NormalizerStep> parse_normalizer(const nlohmann::json& root, std::string_view source);
PreTokenizerSpec parse_pre_tokenizer(const nlohmann::json& root, std::string_view source);
// `byte_level`: the pre-tokenizer is byte-level, so the decoder must be ByteLevel (or absent);
// returns the chain for the other vocabularies.
DecoderChain parse_decoder(const nlohmann::json& root, bool byte_level, std::string_view source);
PostProcessorTokens parse_post_processor(const nlohmann::json& root, std::string_view source);

// The hand-written equivalent of the whole pre-tokenizer, if there is one.
FastPreTokenizer fast_pre_tokenizer_of(const std::vector<PreTokenizerStep>& steps,
                                       int& digit_limit);

}  // namespace llmserve::tokenizer
