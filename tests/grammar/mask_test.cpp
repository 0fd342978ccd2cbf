// Token masks against brute force on a small vocabulary: every token's bytes tried on a copy of
// the matcher must agree with the mask, at random reachable states of several grammars.
#include <gtest/gtest.h>

#include <random>

#include "grammar/json_schema.h"
#include "grammar/vocabulary.h"
#include "tests/grammar/test_support.h"

namespace llmserve::grammar {
namespace {

// Bytes, pairs, JSON-ish pieces, partial and whole UTF-8 characters, a special token, an EOS.
struct SmallVocabulary {
    std::vector<std::string> bytes;
    std::vector<bool> special;
    TokenId eos = 0;
};

SmallVocabulary small_vocabulary() {
    SmallVocabulary v;
    for (int b = 0; b < 256; ++b) v.bytes.emplace_back(1, static_cast<char>(b));
    const std::string alphabet = "ab{}[]\",:0123456789-.eE tnrufls";
    for (const char x : alphabet)
        for (const char y : alphabet) v.bytes.push_back(std::string{x, y});
    for (const char* piece : {"{\"", "\":", "\",\"", "true", "false", "null", "é", "\xC3", "\xA9\"",
                              "😀", "\xF0\x9F", "\x98\x80", "\"}", "]}", "12", "-0", "ab"})
        v.bytes.emplace_back(piece);
    v.special.assign(v.bytes.size(), false);
    v.bytes.emplace_back("<|special|>");
    v.special.push_back(true);
    v.eos = static_cast<TokenId>(v.bytes.size());
    v.bytes.emplace_back("</s>");
    v.special.push_back(true);
    return v;
}

TEST(MaskTest, AgreesWithBruteForceOnSmallVocabulary) {
    const SmallVocabulary v = small_vocabulary();
    const Vocabulary vocabulary(v.bytes, v.special, {v.eos});
    const std::vector<std::string> grammars = {
        json_object_gbnf(),
        json_schema_to_gbnf(
            R"({"type":"object","properties":{"a":{"type":"integer","minimum":-20,"maximum":300},
            "b":{"type":"array","items":{"enum":["x","é",null]},"maxItems":3},"c":{"type":"string","maxLength":4}},
            "required":["a"]})"),
        "root ::= [a-b]+ (\"😀\" | \"é\")? \"\\n\"",
        "root ::= (\"ab\" | \"a\" \"b\"*) \"}\"",
    };
    std::mt19937_64 rng(7);
    for (const auto& gbnf : grammars) {
        SCOPED_TRACE(gbnf.substr(0, 200));
        const Constraint constraint(gbnf);
        EXPECT_EQ(testing::check_masks_against_brute_force(constraint, vocabulary, v.bytes,
                                                           v.special, 60, rng),
                  60);
    }
}

TEST(MaskTest, SpecialTokensNeverAndEosOnlyAtTheEnd) {
    const SmallVocabulary v = small_vocabulary();
    const Vocabulary vocabulary(v.bytes, v.special, {v.eos});
    const Constraint constraint("root ::= \"<|special|>\" | \"ab\"");
    Matcher matcher(constraint);
    std::vector<std::uint32_t> mask(vocabulary.mask_words());
    matcher.fill_mask(vocabulary, mask);
    EXPECT_FALSE(mask_allows(mask, v.eos - 1));  // the special token, though its text matches
    EXPECT_FALSE(mask_allows(mask, v.eos));
    EXPECT_TRUE(mask_allows(mask, 'a'));
    ASSERT_TRUE(matcher.accept("ab"));
    matcher.fill_mask(vocabulary, mask);
    EXPECT_TRUE(mask_allows(mask, v.eos));
    EXPECT_FALSE(mask_allows(mask, 'a'));
}

TEST(MaskTest, CachedMaskEqualsFreshOne) {
    const SmallVocabulary v = small_vocabulary();
    const Vocabulary vocabulary(v.bytes, v.special, {v.eos});
    const Constraint constraint(json_object_gbnf());
    Matcher a(constraint);
    ASSERT_TRUE(a.accept("{\"k\":"));
    std::vector<std::uint32_t> first(vocabulary.mask_words()), second(vocabulary.mask_words());
    a.fill_mask(vocabulary, first);
    a.fill_mask(vocabulary, second);
    EXPECT_EQ(first, second);
    const Constraint separate(json_object_gbnf());  // its own automaton: computed afresh
    Matcher b(separate);
    ASSERT_TRUE(b.accept("{\"k\":"));
    b.fill_mask(vocabulary, second);
    EXPECT_EQ(first, second);
}

}  // namespace
}  // namespace llmserve::grammar
