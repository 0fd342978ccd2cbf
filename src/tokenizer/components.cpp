#include "tokenizer/components.h"

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "tokenizer/llama3_scanner.h"
#include "tokenizer/utf8.h"

namespace llmserve::tokenizer {
namespace {

using nlohmann::json;

std::string brief(const json& value) {
    std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() > 60) text = text.substr(0, 57) + "...";
    return text;
}

bool is_absent(const json& object, std::string_view key) {
    const auto it = object.find(key);
    return it == object.end() || it->is_null();
}

// The "type" of component `value` at `path`, checked to be an object with a string type.
std::string type_of(const json& value, std::string_view path, std::string_view source) {
    if (!value.is_object() || !value.contains("type") || !value["type"].is_string()) {
        fail(ErrorCode::kCorruptData, "{}: {} must be an object with a string 'type', got {}",
             source, path, brief(value));
    }
    return value["type"].get<std::string>();
}

[[noreturn]] void fail_unsupported(std::string_view source, std::string_view path,
                                   const json& value, std::string_view why) {
    fail(ErrorCode::kUnsupported, "{}: {} {} is not supported: {}", source, path, brief(value),
         why);
}

bool boolean(const json& object, std::string_view key, bool fallback, std::string_view path,
             std::string_view source) {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) {
        fail(ErrorCode::kCorruptData, "{}: {}.{} must be true or false, got {}", source, path, key,
             brief(*it));
    }
    return it->get<bool>();
}

std::string string_field(const json& object, std::string_view key, std::string_view path,
                         std::string_view source) {
    const auto it = object.find(key);
    if (it == object.end() || !it->is_string()) {
        fail(ErrorCode::kCorruptData, "{}: {}.{} must be a string, got {}", source, path, key,
             it == object.end() ? "nothing" : brief(*it));
    }
    return it->get<std::string>();
}

std::size_t count_field(const json& object, std::string_view key, std::string_view path,
                        std::string_view source) {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return 0;
    if (!it->is_number_unsigned() || it->get<std::uint64_t>() > 1'000'000) {
        fail(ErrorCode::kCorruptData, "{}: {}.{} must be a count, got {}", source, path, key,
             brief(*it));
    }
    return it->get<std::size_t>();
}

// One Unicode character, as Metaspace's replacement and Strip's content are.
std::string single_char(const json& object, std::string_view key, std::string_view path,
                        std::string_view source) {
    std::string text = string_field(object, key, path, source);
    if (text.empty() || next_utf8_sequence(text, 0).length != text.size()) {
        fail(ErrorCode::kCorruptData, "{}: {}.{} must be one character, got {}", source, path, key,
             json(text).dump());
    }
    return text;
}

// {"String": s} or {"Regex": r}.
TextPattern parse_pattern(const json& component, std::string_view path, std::string_view source) {
    const std::string where = fmt::format("{}.pattern", path);
    const auto it = component.find("pattern");
    if (it == component.end() || !it->is_object() || it->size() != 1) {
        fail(ErrorCode::kCorruptData, "{}: {} must be {{\"String\": ...}} or {{\"Regex\": ...}}",
             source, where);
    }
    if (it->contains("String")) return {string_field(*it, "String", where, source), nullptr};
    if (it->contains("Regex")) {
        const std::string pattern = string_field(*it, "Regex", where, source);
        return {"", std::make_shared<const Regex>(pattern, fmt::format("{}: {}", source, where))};
    }
    fail(ErrorCode::kUnsupported, "{}: {} {} is not supported (expected String or Regex)", source,
         where, brief(*it));
}

void add_normalizer(const json& value, const std::string& path, std::string_view source,
                    std::vector<NormalizerStep>& steps) {
    const std::string type = type_of(value, path, source);
    using Kind = NormalizerStep::Kind;
    if (type == "Sequence") {
        const auto it = value.find("normalizers");
        if (it == value.end() || !it->is_array()) {
            fail(ErrorCode::kCorruptData, "{}: {}.normalizers must be an array", source, path);
        }
        for (std::size_t i = 0; i < it->size(); ++i)
            add_normalizer((*it)[i], fmt::format("{}.normalizers[{}]", path, i), source, steps);
    } else if (type == "NFC") {
        steps.push_back({Kind::kNfc, "", {}});
    } else if (type == "NFD") {
        steps.push_back({Kind::kNfd, "", {}});
    } else if (type == "NFKC") {
        steps.push_back({Kind::kNfkc, "", {}});
    } else if (type == "NFKD") {
        steps.push_back({Kind::kNfkd, "", {}});
    } else if (type == "Prepend") {
        steps.push_back({Kind::kPrepend, string_field(value, "prepend", path, source), {}});
    } else if (type == "Replace") {
        steps.push_back({Kind::kReplace, string_field(value, "content", path, source),
                         parse_pattern(value, path, source)});
    } else if (type == "Strip") {
        NormalizerStep step{Kind::kStrip, "", {}};
        step.strip_left = boolean(value, "strip_left", true, path, source);
        step.strip_right = boolean(value, "strip_right", true, path, source);
        steps.push_back(std::move(step));
    } else {
        fail_unsupported(source, path, value["type"],
                         "known normalizers are Sequence, NFC, NFD, NFKC, NFKD, Prepend, Replace "
                         "and Strip");
    }
}

SplitBehavior parse_behavior(const json& value, std::string_view path, std::string_view source) {
    const std::string behavior = string_field(value, "behavior", path, source);
    if (behavior == "Removed") return SplitBehavior::kRemoved;
    if (behavior == "Isolated") return SplitBehavior::kIsolated;
    if (behavior == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
    if (behavior == "MergedWithNext") return SplitBehavior::kMergedWithNext;
    if (behavior == "Contiguous") return SplitBehavior::kContiguous;
    fail(ErrorCode::kUnsupported,
         "{}: {}.behavior {} is not supported (expected Removed, Isolated, MergedWithPrevious, "
         "MergedWithNext or Contiguous)",
         source, path, json(behavior).dump());
}

PreTokenizerStep::PrependScheme parse_prepend_scheme(const json& value, std::string_view path,
                                                     std::string_view source) {
    using Scheme = PreTokenizerStep::PrependScheme;
    if (is_absent(value, "prepend_scheme")) {
        // Files older than prepend_scheme spell it as add_prefix_space.
        return boolean(value, "add_prefix_space", true, path, source) ? Scheme::kAlways
                                                                      : Scheme::kNever;
    }
    const std::string scheme = string_field(value, "prepend_scheme", path, source);
    if (scheme == "always") return Scheme::kAlways;
    if (scheme == "first") return Scheme::kFirst;
    if (scheme == "never") return Scheme::kNever;
    fail(ErrorCode::kUnsupported,
         "{}: {}.prepend_scheme {} is not supported (expected always, first or never)", source,
         path, json(scheme).dump());
}

void add_pre_tokenizer(const json& value, const std::string& path, std::string_view source,
                       PreTokenizerSpec& spec) {
    const std::string type = type_of(value, path, source);
    using Kind = PreTokenizerStep::Kind;
    if (spec.byte_level) {
        // HF's ByteLevel maps the text to its alphabet, which later steps would then see.
        fail_unsupported(source, path, value["type"], "a step after ByteLevel");
    }
    if (type == "Sequence") {
        const auto it = value.find("pretokenizers");
        if (it == value.end() || !it->is_array()) {
            fail(ErrorCode::kCorruptData, "{}: {}.pretokenizers must be an array", source, path);
        }
        for (std::size_t i = 0; i < it->size(); ++i)
            add_pre_tokenizer((*it)[i], fmt::format("{}.pretokenizers[{}]", path, i), source, spec);
    } else if (type == "Split") {
        PreTokenizerStep step{Kind::kSplit};
        step.pattern = parse_pattern(value, path, source);
        step.behavior = parse_behavior(value, path, source);
        step.invert = boolean(value, "invert", false, path, source);
        if (step.pattern.regex && step.behavior == SplitBehavior::kIsolated && !step.invert) {
            if (const auto limit = Llama3Scanner::digit_limit_of(step.pattern.regex->pattern())) {
                step.kind = Kind::kLlama3Regex;  // the same pieces, hand-written
                step.digit_limit = *limit;
            }
        }
        spec.steps.push_back(std::move(step));
    } else if (type == "ByteLevel") {
        if (boolean(value, "add_prefix_space", true, path, source))
            spec.steps.push_back({Kind::kPrefixSpace});
        if (boolean(value, "use_regex", true, path, source))
            spec.steps.push_back({Kind::kGpt2Regex});
        spec.byte_level = true;
    } else if (type == "Metaspace") {
        PreTokenizerStep step{Kind::kMetaspace};
        step.replacement = is_absent(value, "replacement")
                               ? std::string("\xE2\x96\x81")
                               : single_char(value, "replacement", path, source);
        step.prepend_scheme = parse_prepend_scheme(value, path, source);
        step.split = boolean(value, "split", true, path, source);
        spec.steps.push_back(std::move(step));
    } else if (type == "Digits") {
        PreTokenizerStep step{Kind::kDigits};
        step.individual_digits = boolean(value, "individual_digits", false, path, source);
        spec.steps.push_back(std::move(step));
    } else {
        fail_unsupported(source, path, value["type"],
                         "known pre-tokenizers are Sequence, Split, ByteLevel, Metaspace and "
                         "Digits");
    }
}

void add_decoder(const json& value, const std::string& path, std::string_view source,
                 DecoderChain& chain) {
    const std::string type = type_of(value, path, source);
    using Kind = DecoderStep::Kind;
    if (type == "Sequence") {
        const auto it = value.find("decoders");
        if (it == value.end() || !it->is_array()) {
            fail(ErrorCode::kCorruptData, "{}: {}.decoders must be an array", source, path);
        }
        for (std::size_t i = 0; i < it->size(); ++i)
            add_decoder((*it)[i], fmt::format("{}.decoders[{}]", path, i), source, chain);
        return;
    }
    if (type == "Fuse") {
        chain.fused = true;  // a second Fuse changes nothing
        return;
    }
    if (chain.fused) {
        // After Fuse the steps see the whole text as one token.
        if (type != "Strip" || !chain.fused_strip_content.empty()) {
            fail_unsupported(source, path, value["type"],
                             "after Fuse only one Strip decoder is supported");
        }
        chain.fused_strip_content = single_char(value, "content", path, source);
        chain.fused_strip_start = count_field(value, "start", path, source);
        chain.fused_strip_stop = count_field(value, "stop", path, source);
        return;
    }
    if (type == "Replace") {
        const TextPattern pattern = parse_pattern(value, path, source);
        if (pattern.regex) {
            fail_unsupported(source, path, value["pattern"],
                             "a Replace decoder's pattern must be a String");
        }
        DecoderStep step{Kind::kReplace, pattern.literal,
                         string_field(value, "content", path, source)};
        chain.per_token.push_back(std::move(step));
    } else if (type == "Strip") {
        DecoderStep step{Kind::kStrip, "", single_char(value, "content", path, source)};
        step.start = count_field(value, "start", path, source);
        step.stop = count_field(value, "stop", path, source);
        chain.per_token.push_back(std::move(step));
    } else if (type == "Metaspace") {
        DecoderStep step{Kind::kMetaspace,
                         is_absent(value, "replacement")
                             ? std::string("\xE2\x96\x81")
                             : single_char(value, "replacement", path, source),
                         ""};
        step.drop_in_first =
            parse_prepend_scheme(value, path, source) != PreTokenizerStep::PrependScheme::kNever;
        chain.per_token.push_back(std::move(step));
    } else if (type == "ByteFallback") {
        chain.per_token.push_back({Kind::kByteFallback, "", ""});
    } else {
        fail_unsupported(source, path, value["type"],
                         "known decoders for a vocabulary that is not byte-level are Sequence, "
                         "Replace, Strip, Metaspace, ByteFallback and Fuse");
    }
}

// The ids of a TemplateProcessing special token, by its name in "special_tokens".
std::vector<TokenId> template_token_ids(const json& processor, const std::string& name,
                                        std::string_view path, std::string_view source) {
    const auto tokens = processor.find("special_tokens");
    if (tokens == processor.end() || !tokens->is_object() || !tokens->contains(name)) {
        fail(ErrorCode::kCorruptData,
             "{}: {} uses the special token {}, which its special_tokens lack", source, path,
             json(name).dump());
    }
    const json& entry = (*tokens)[name];
    if (!entry.is_object() || !entry.contains("ids") || !entry["ids"].is_array()) {
        fail(ErrorCode::kCorruptData, "{}: {}.special_tokens[{}] must have an 'ids' array", source,
             path, json(name).dump());
    }
    std::vector<TokenId> ids;
    for (const json& id : entry["ids"]) {
        if (!id.is_number_unsigned() || id.get<std::uint64_t>() > (1u << 22)) {
            fail(ErrorCode::kCorruptData, "{}: {}.special_tokens[{}].ids holds {}, not a token id",
                 source, path, json(name).dump(), brief(id));
        }
        ids.push_back(static_cast<TokenId>(id.get<std::uint64_t>()));
    }
    return ids;
}

// A [token, id] pair as RobertaProcessing and BertProcessing spell cls and sep.
TokenId processing_token(const json& processor, std::string_view key, std::string_view path,
                         std::string_view source) {
    const auto it = processor.find(key);
    if (it == processor.end() || !it->is_array() || it->size() != 2 ||
        !(*it)[1].is_number_unsigned() || (*it)[1].get<std::uint64_t>() > (1u << 22)) {
        fail(ErrorCode::kCorruptData, "{}: {}.{} must be [token, id]", source, path, key);
    }
    return static_cast<TokenId>((*it)[1].get<std::uint64_t>());
}

void add_post_processor(const json& value, const std::string& path, std::string_view source,
                        PostProcessorTokens& tokens) {
    const std::string type = type_of(value, path, source);
    PostProcessorTokens added;
    if (type == "Sequence") {
        const auto it = value.find("processors");
        if (it == value.end() || !it->is_array()) {
            fail(ErrorCode::kCorruptData, "{}: {}.processors must be an array", source, path);
        }
        for (std::size_t i = 0; i < it->size(); ++i)
            add_post_processor((*it)[i], fmt::format("{}.processors[{}]", path, i), source, tokens);
        return;
    }
    if (type == "ByteLevel") return;  // it only adjusts offsets
    if (type == "TemplateProcessing") {
        const auto single = value.find("single");
        if (single == value.end() || !single->is_array()) {
            fail(ErrorCode::kCorruptData, "{}: {}.single must be an array", source, path);
        }
        bool seen_sequence = false;
        for (const json& piece : *single) {
            if (piece.is_object() && piece.contains("Sequence")) {
                const json& sequence = piece["Sequence"];
                if (seen_sequence || !sequence.is_object() || !sequence.contains("id") ||
                    sequence["id"] != "A") {
                    fail_unsupported(source, path + ".single", *single,
                                     "a single-sequence template holds $A exactly once");
                }
                seen_sequence = true;
            } else if (piece.is_object() && piece.contains("SpecialToken") &&
                       piece["SpecialToken"].is_object() && piece["SpecialToken"].contains("id") &&
                       piece["SpecialToken"]["id"].is_string()) {
                const auto ids = template_token_ids(
                    value, piece["SpecialToken"]["id"].get<std::string>(), path, source);
                auto& side = seen_sequence ? added.suffix : added.prefix;
                side.insert(side.end(), ids.begin(), ids.end());
            } else {
                fail(ErrorCode::kCorruptData,
                     "{}: {}.single holds {}, neither a Sequence nor a SpecialToken", source, path,
                     brief(piece));
            }
        }
        if (!seen_sequence) {
            fail_unsupported(source, path + ".single", *single, "the template lacks $A");
        }
    } else if (type == "RobertaProcessing" || type == "BertProcessing") {
        added.prefix.push_back(processing_token(value, "cls", path, source));
        added.suffix.push_back(processing_token(value, "sep", path, source));
    } else {
        fail_unsupported(source, path, value["type"],
                         "known post-processors are Sequence, ByteLevel, TemplateProcessing, "
                         "RobertaProcessing and BertProcessing");
    }
    // Each processor wraps what the previous ones produced.
    tokens.prefix.insert(tokens.prefix.begin(), added.prefix.begin(), added.prefix.end());
    tokens.suffix.insert(tokens.suffix.end(), added.suffix.begin(), added.suffix.end());
}

}  // namespace

std::vector<NormalizerStep> parse_normalizer(const json& root, std::string_view source) {
    std::vector<NormalizerStep> steps;
    if (!is_absent(root, "normalizer"))
        add_normalizer(root["normalizer"], "normalizer", source, steps);
    return steps;
}

PreTokenizerSpec parse_pre_tokenizer(const json& root, std::string_view source) {
    PreTokenizerSpec spec;
    if (!is_absent(root, "pre_tokenizer"))
        add_pre_tokenizer(root["pre_tokenizer"], "pre_tokenizer", source, spec);
    return spec;
}

DecoderChain parse_decoder(const json& root, bool byte_level, std::string_view source) {
    DecoderChain chain;
    if (byte_level) {
        // Absent: the GPT-2 files this code always read as byte-level.
        if (is_absent(root, "decoder")) return chain;
        const json& decoder = root["decoder"];
        const std::string type = type_of(decoder, "decoder", source);
        const bool lone_byte_level =
            type == "ByteLevel" ||
            (type == "Sequence" && decoder.contains("decoders") && decoder["decoders"].is_array() &&
             decoder["decoders"].size() == 1 && decoder["decoders"][0].is_object() &&
             decoder["decoders"][0].contains("type") &&
             decoder["decoders"][0]["type"] == "ByteLevel");
        if (!lone_byte_level) {
            fail_unsupported(source, "decoder", decoder,
                             "a byte-level pre-tokenizer needs the ByteLevel decoder alone");
        }
        return chain;
    }
    if (is_absent(root, "decoder")) {
        fail(ErrorCode::kUnsupported,
             "{}: decoder null is not supported for a vocabulary that is not byte-level", source);
    }
    const json& decoder = root["decoder"];
    if (type_of(decoder, "decoder", source) == "ByteLevel") {
        fail_unsupported(source, "decoder", decoder["type"],
                         "the ByteLevel decoder needs a ByteLevel pre-tokenizer");
    }
    add_decoder(decoder, "decoder", source, chain);
    return chain;
}

PostProcessorTokens parse_post_processor(const json& root, std::string_view source) {
    PostProcessorTokens tokens;
    if (!is_absent(root, "post_processor"))
        add_post_processor(root["post_processor"], "post_processor", source, tokens);
    return tokens;
}

FastPreTokenizer fast_pre_tokenizer_of(const std::vector<PreTokenizerStep>& steps,
                                       int& digit_limit) {
    if (steps.size() != 1) return FastPreTokenizer::kNone;
    const PreTokenizerStep& step = steps[0];
    if (step.kind == PreTokenizerStep::Kind::kGpt2Regex) return FastPreTokenizer::kGpt2;
    if (step.kind == PreTokenizerStep::Kind::kLlama3Regex) {
        digit_limit = step.digit_limit;
        return FastPreTokenizer::kLlama3;
    }
    return FastPreTokenizer::kNone;
}

}  // namespace llmserve::tokenizer
