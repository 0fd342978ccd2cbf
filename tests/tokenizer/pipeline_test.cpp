// The tokenizer.json components one by one: the hand-written Llama 3 / Qwen scanner against PCRE2,
// Split behaviours, Metaspace, added-token flags, SentencePiece-style BPE with byte fallback, the
// decoder chain and its streaming.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>
#include <string>
#include <vector>

#include "test_support.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/decoder.h"
#include "tokenizer/llama3_scanner.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace llmserve::tokenizer {
namespace {

constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwenPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Consecutive matches of `regex` (and the unmatched text between them) over `text`.
std::vector<std::string> regex_pieces(const Regex& regex, std::string_view text) {
    std::vector<std::string> pieces;
    std::size_t previous = 0;
    for (std::size_t pos = 0; pos < text.size();) {
        const auto match = regex.find(text, pos);
        if (!match) break;
        if (match->start != previous)
            pieces.emplace_back(text.substr(previous, match->start - previous));
        pieces.emplace_back(text.substr(match->start, match->end - match->start));
        previous = pos = match->end;
    }
    if (previous != text.size()) pieces.emplace_back(text.substr(previous));
    return pieces;
}

std::vector<std::string> scanner_pieces(std::string_view text, int digit_limit) {
    std::vector<std::string> pieces;
    Llama3Scanner scanner(text, digit_limit);
    for (std::string_view piece = scanner.next(); !piece.empty(); piece = scanner.next())
        pieces.emplace_back(piece);
    return pieces;
}

TEST(Llama3Scanner, RecognisesExactlyTheTwoPatterns) {
    EXPECT_EQ(Llama3Scanner::digit_limit_of(kLlama3Pattern), 3);
    EXPECT_EQ(Llama3Scanner::digit_limit_of(kQwenPattern), 1);
    EXPECT_EQ(Llama3Scanner::digit_limit_of(R"(\p{N}{1,3})"), std::nullopt);
    std::string other(kLlama3Pattern);
    other.replace(other.find("{1,3}"), 5, "{1,4}");
    EXPECT_EQ(Llama3Scanner::digit_limit_of(other), std::nullopt);
}

TEST(Llama3Scanner, SplitsLikeTheRegex) {
    EXPECT_EQ(scanner_pieces("Hello world 12345 it's", 3),
              (std::vector<std::string>{"Hello", " world", " ", "123", "45", " it", "'s"}));
    EXPECT_EQ(scanner_pieces("a  \n\n b", 3), (std::vector<std::string>{"a", "  \n\n", " b"}));
    EXPECT_EQ(scanner_pieces("x...!\n(y", 1), (std::vector<std::string>{"x", "...!\n", "(y"}));
}

// Random strings over characters that exercise every alternative and class boundary: both
// scanners must give PCRE2's pieces.
TEST(Llama3Scanner, AgreesWithPcre2OnRandomText) {
    const std::vector<std::string> alphabet = {"a",
                                               "Z",
                                               "s",
                                               "S",
                                               "t",
                                               "r",
                                               "e",
                                               "v",
                                               "l",
                                               "L",
                                               "d",
                                               "m",
                                               "'",
                                               "\xC5\xBF" /* ſ */,
                                               "0",
                                               "7",
                                               "\xD9\xA3" /* Arabic-Indic 3 */,
                                               "\xC2\xB2" /* ² */,
                                               " ",
                                               " ",
                                               "\t",
                                               "\r",
                                               "\n",
                                               "\xC2\x85" /* NEL */,
                                               "\xC2\xA0",
                                               "\xE1\xA0\x8E" /* U+180E */,
                                               "\xE2\x80\xA8",
                                               "\xE3\x80\x80",
                                               "\x1C",
                                               ".",
                                               "!",
                                               "(",
                                               "-",
                                               "_",
                                               "\xE4\xB8\xAD" /* 中 */,
                                               "\xCC\x81" /* combining acute */,
                                               "\xF0\x9F\x98\x80" /* emoji */,
                                               "\xE2\x80\x8D" /* ZWJ */,
                                               "\xD7\x90" /* Hebrew */};
    std::mt19937 random(1234);
    for (const auto& [pattern, limit] :
         {std::pair{kLlama3Pattern, 3}, std::pair{kQwenPattern, 1}}) {
        const Regex regex(pattern, "test");
        for (int round = 0; round < 3000; ++round) {
            std::string text;
            const int length = 1 + static_cast<int>(random() % 12);
            for (int i = 0; i < length; ++i) text += alphabet[random() % alphabet.size()];
            ASSERT_EQ(scanner_pieces(text, limit), regex_pieces(regex, text))
                << "digit limit " << limit << ", text " << nlohmann::json(text).dump(-1, ' ', true);
        }
    }
}

TEST(Regex, WhiteSpaceIsUnicodesProperty) {
    EXPECT_EQ(
        rewrite_whitespace_classes(R"(a\s[^\s\p{L}]\S\\s)"),
        "a[\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
        "\\x{202F}\\x{205F}\\x{3000}][^\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-"
        "\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\p{L}][^\\t-\\r\\x{20}\\x{85}"
        "\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}]\\\\s");
    const Regex spaces(R"(\s+)", "test");
    EXPECT_FALSE(spaces.find("\xE1\xA0\x8E", 0));  // U+180E is not White_Space
    EXPECT_TRUE(spaces.find("\xC2\x85", 0));       // U+0085 is
}

std::vector<std::string> pre_tokenize(const PreTokenizer& pre_tokenizer, std::string_view text,
                                      bool at_origin = true) {
    std::vector<std::string> pieces;
    pre_tokenizer.run(text, at_origin, [&](std::string_view piece) { pieces.emplace_back(piece); });
    return pieces;
}

// Hugging Face's own example for the behaviours.
TEST(PreTokenizer, SplitBehavioursAsHuggingFaceDefinesThem) {
    const auto split = [](SplitBehavior behavior, bool invert = false) {
        PreTokenizerStep step{PreTokenizerStep::Kind::kSplit};
        step.pattern = TextPattern{"-", nullptr};
        step.behavior = behavior;
        step.invert = invert;
        return pre_tokenize(PreTokenizer({step}), "The-final--countdown");
    };
    using Pieces = std::vector<std::string>;
    EXPECT_EQ(split(SplitBehavior::kRemoved), (Pieces{"The", "final", "countdown"}));
    EXPECT_EQ(split(SplitBehavior::kIsolated),
              (Pieces{"The", "-", "final", "-", "-", "countdown"}));
    EXPECT_EQ(split(SplitBehavior::kMergedWithPrevious),
              (Pieces{"The-", "final-", "-", "countdown"}));
    EXPECT_EQ(split(SplitBehavior::kMergedWithNext), (Pieces{"The", "-final", "-", "-countdown"}));
    EXPECT_EQ(split(SplitBehavior::kContiguous), (Pieces{"The", "-", "final", "--", "countdown"}));
    EXPECT_EQ(split(SplitBehavior::kRemoved, true), (Pieces{"-", "-", "-"}));
}

TEST(PreTokenizer, MetaspacePrependsPerSchemeAndSplitsBeforeEachMarker) {
    PreTokenizerStep step{PreTokenizerStep::Kind::kMetaspace};
    step.replacement = "\xE2\x96\x81";
    step.prepend_scheme = PreTokenizerStep::PrependScheme::kFirst;
    const PreTokenizer first({step});
    EXPECT_EQ(pre_tokenize(first, "Hey  you"),
              (std::vector<std::string>{"\xE2\x96\x81Hey", "\xE2\x96\x81", "\xE2\x96\x81you"}));
    EXPECT_EQ(pre_tokenize(first, "you", false), (std::vector<std::string>{"you"}));
    step.prepend_scheme = PreTokenizerStep::PrependScheme::kAlways;
    step.split = false;
    EXPECT_EQ(pre_tokenize(PreTokenizer({step}), "a b", false),
              (std::vector<std::string>{"\xE2\x96\x81"
                                        "a\xE2\x96\x81"
                                        "b"}));
}

TEST(PreTokenizer, DigitsIndividuallyOrAsRuns) {
    PreTokenizerStep step{PreTokenizerStep::Kind::kDigits};
    EXPECT_EQ(pre_tokenize(PreTokenizer({step}), "ab123c4"),
              (std::vector<std::string>{"ab", "123", "c", "4"}));
    step.individual_digits = true;
    EXPECT_EQ(pre_tokenize(PreTokenizer({step}), "ab12"),
              (std::vector<std::string>{"ab", "1", "2"}));
}

struct Split {
    std::vector<std::string> texts;
    std::vector<TokenId> ids;
};

Split split_added(const AddedTokenMatcher& matcher, std::string_view text) {
    Split result;
    matcher.split(
        text, [&](std::string_view part, std::size_t) { result.texts.emplace_back(part); },
        [&](TokenId id) { result.ids.push_back(id); });
    return result;
}

TEST(AddedTokens, StripAndSingleWordFlags) {
    AddedTokenMatcher strip({{"<m>", 7, false, true, true}});
    const Split stripped = split_added(strip, "a  <m>  b");
    EXPECT_EQ(stripped.texts, (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(stripped.ids, (std::vector<TokenId>{7}));

    AddedTokenMatcher word({{"ab", 9, true}});
    EXPECT_EQ(split_added(word, "xab ab").ids, (std::vector<TokenId>{9}));
    EXPECT_EQ(split_added(word, "xab ab").texts, (std::vector<std::string>{"xab ", ""}));
    EXPECT_TRUE(split_added(word, "abc").ids.empty());
}

// The SentencePiece-style tokenizer of error_test's shape, with a Strip after Fuse.
Tokenizer sentencepiece_tokenizer() {
    nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"\u2581", 2},
                            {"a", 3},     {"b", 4},   {"\u2581a", 5}};
    for (int byte = 0; byte < 256; ++byte) vocab[fmt::format("<0x{:02X}>", byte)] = 6 + byte;
    const nlohmann::json json = {
        {"added_tokens",
         {{{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}}}},
        {"model",
         {{"type", "BPE"},
          {"vocab", vocab},
          {"merges", {"\u2581 a"}},
          {"byte_fallback", true},
          {"unk_token", "<unk>"}}},
        {"normalizer",
         {{"type", "Sequence"},
          {"normalizers",
           {{{"type", "Prepend"}, {"prepend", "\u2581"}},
            {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}}},
        {"post_processor",
         {{"type", "TemplateProcessing"},
          {"single", {{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}}},
          {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}}}}}}},
        {"decoder",
         {{"type", "Sequence"},
          {"decoders",
           {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
            {{"type", "ByteFallback"}},
            {{"type", "Fuse"}},
            {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 1}}}}}}};
    return Tokenizer::from_tokenizer_json_text(json.dump(), "sp.json",
                                               R"({"bos_token": {"content": "<s>"}})");
}

TEST(SentencePieceStyle, ByteFallbackPrependAndTemplate) {
    const Tokenizer tokenizer = sentencepiece_tokenizer();
    // "▁a" merges; "é" has no token: its bytes C3 A9 become <0xC3> <0xA9>.
    EXPECT_EQ(tokenizer.encode("a \xC3\xA9", false),
              (std::vector<TokenId>{5, 2, 6 + 0xC3, 6 + 0xA9}));
    EXPECT_EQ(tokenizer.encode("a", true), (std::vector<TokenId>{1, 5}));
    // Text after an added token is normalized on its own: it gets its own "▁".
    EXPECT_EQ(tokenizer.encode("a<s>b", false), (std::vector<TokenId>{5, 1, 2, 4}));
    EXPECT_EQ(tokenizer.bos_token_id(), 1);
    EXPECT_EQ(tokenizer.eos_token_id(), std::nullopt);
    EXPECT_EQ(tokenizer.token_bytes(5), " a");
    EXPECT_EQ(tokenizer.token_bytes(6 + 0x0A), "\n");
    EXPECT_EQ(tokenizer.token_id("\u2581a"), 5);
}

TEST(SentencePieceStyle, DecodeAndStreamAgreeAcrossFallbackAndStrip) {
    const Tokenizer tokenizer = sentencepiece_tokenizer();
    const std::vector<std::vector<TokenId>> cases = {
        {5, 2, 6 + 0xC3, 6 + 0xA9, 2},  // " a é " -> strip one space each end
        {6 + 0xC3, 6 + 0xFF, 3},        // invalid group: one U+FFFD per byte
        {2, 2, 3, 2, 2},                // leading and trailing runs of the stripped character
        {1, 5, 6 + 0xE2, 6 + 0x96},     // a group cut off by the end
        {2},
    };
    const std::vector<std::string> expected = {"a \xC3\xA9",
                                               "\xEF\xBF\xBD\xEF\xBF\xBD"
                                               "a",
                                               " a ", "<s> a\xEF\xBF\xBD\xEF\xBF\xBD", ""};
    for (std::size_t i = 0; i < cases.size(); ++i) {
        EXPECT_EQ(tokenizer.decode(cases[i]), expected[i]) << "case " << i;
        StreamingDetokenizer stream(tokenizer);
        std::string streamed;
        for (const TokenId id : cases[i]) {
            const std::string piece = stream.push(id);
            EXPECT_TRUE(is_valid_utf8(piece));
            streamed += piece;
            EXPECT_TRUE(expected[i].starts_with(streamed)) << "case " << i;
        }
        EXPECT_EQ(streamed + stream.finish(), expected[i]) << "case " << i;
    }
}

TEST(SentencePieceStyle, DirectoryReadsTokenizerConfig) {
    const testing::ScratchDir scratch;
    nlohmann::json json = nlohmann::json::parse(
        R"({"model": {"type": "BPE", "vocab": {"<s>": 0, "</s>": 1, "a": 2}, "merges": []},
            "decoder": {"type": "Fuse"}})");
    scratch.write("tokenizer.json", json.dump());
    // transformers' Llama classes rebuild the post-processor from add_bos_token / add_eos_token.
    scratch.write("tokenizer_config.json",
                  R"({"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>",
                      "eos_token": {"content": "</s>", "special": true}, "add_eos_token": true})");
    const Tokenizer tokenizer = Tokenizer::from_directory(scratch.path());
    EXPECT_EQ(tokenizer.bos_token_id(), 0);
    EXPECT_EQ(tokenizer.eos_token_id(), 1);
    EXPECT_EQ(tokenizer.encode("aa"), (std::vector<TokenId>{0, 2, 2, 1}));
    EXPECT_EQ(tokenizer.encode("aa", false), (std::vector<TokenId>{2, 2}));
}

TEST(Decoder, MetaspaceDropsMarkersOfTheFirstTokenOnly) {
    DecoderChain chain;
    chain.per_token.push_back({DecoderStep::Kind::kMetaspace, "\xE2\x96\x81", ""});
    chain.per_token.back().drop_in_first = true;
    DecodeStream stream(chain);
    std::string text = stream.push("\xE2\x96\x81Hi\xE2\x96\x81");
    text += stream.push("\xE2\x96\x81there");
    EXPECT_EQ(text + stream.finish(), "Hi there");
}

}  // namespace
}  // namespace llmserve::tokenizer
