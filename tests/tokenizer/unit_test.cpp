// Unit tests of the pieces the fixtures exercise only indirectly: regex semantics of the
// pre-tokenizer, UTF-8 repair, the byte-level alphabet, merge order and added-token splitting.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "test_support.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace llmserve::tokenizer {
namespace {

using Pieces = std::vector<std::string>;

Pieces pieces_of(std::string_view text) {
    Pieces pieces;
    PieceScanner scanner(text);
    for (std::string_view piece = scanner.next(); !piece.empty(); piece = scanner.next()) {
        pieces.emplace_back(piece);
    }
    return pieces;
}

std::string lossy(std::string_view bytes) {
    std::string out;
    append_utf8_lossy(bytes, out);
    return out;
}

TEST(PieceScanner, WordsTakeTheirLeadingSpace) {
    EXPECT_EQ(pieces_of("Hello world"), (Pieces{"Hello", " world"}));
    EXPECT_EQ(pieces_of(" 123 abc ?!"), (Pieces{" 123", " abc", " ?!"}));
    EXPECT_EQ(pieces_of("abc123def"), (Pieces{"abc", "123", "def"}));
}

TEST(PieceScanner, WhitespaceRunLeavesItsLastCharacterToTheNextWord) {
    EXPECT_EQ(pieces_of("  leading"), (Pieces{" ", " leading"}));
    EXPECT_EQ(pieces_of("a  \n  b"), (Pieces{"a", "  \n ", " b"}));
    EXPECT_EQ(pieces_of(" \t x"), (Pieces{" \t", " x"}));
    // A lone non-space whitespace character cannot join the word: \s+ takes it alone.
    EXPECT_EQ(pieces_of("x\n\ny"), (Pieces{"x", "\n", "\n", "y"}));
    // At the end of the text the whole run is one piece.
    EXPECT_EQ(pieces_of("trailing   "), (Pieces{"trailing", "   "}));
    EXPECT_EQ(pieces_of("\n\n\n"), (Pieces{"\n\n\n"}));
}

TEST(PieceScanner, ContractionsAreCaseSensitiveAndGreedyFirst) {
    EXPECT_EQ(pieces_of("I'm"), (Pieces{"I", "'m"}));
    EXPECT_EQ(pieces_of("we'll they've"), (Pieces{"we", "'ll", " they", "'ve"}));
    EXPECT_EQ(pieces_of("'sand"), (Pieces{"'s", "and"}));
    EXPECT_EQ(pieces_of("DON'T"), (Pieces{"DON", "'", "T"}));
    // Inside a punctuation run the apostrophe is taken by the run.
    EXPECT_EQ(pieces_of("?'s"), (Pieces{"?'", "s"}));
}

TEST(PieceScanner, UnicodeClassesFollowWhiteSpaceAndGeneralCategories) {
    EXPECT_EQ(pieces_of("a\u00A0b"), (Pieces{"a", "\u00A0", "b"}));  // NBSP is White_Space
    EXPECT_EQ(pieces_of("a\x1F"
                        "b"),
              (Pieces{"a", "\x1F", "b"}));              // U+001F is not
    EXPECT_EQ(pieces_of("\u0663\u0664 \u216B \u00BD"),  // Nd, Nl and No digits
              (Pieces{"\u0663\u0664", " \u216B", " \u00BD"}));
    // Combining marks (Mn, Mc) are neither letters nor numbers.
    EXPECT_EQ(pieces_of("\u0939\u093F\u0928"), (Pieces{"\u0939", "\u093F", "\u0928"}));
    EXPECT_EQ(classify_code_point(U'\u3000'), CharClass::kSpace);
    EXPECT_EQ(classify_code_point(U'\u200B'), CharClass::kOther);  // zero width space: Cf
    EXPECT_EQ(classify_code_point(U'\U0001D518'), CharClass::kLetter);
}

TEST(PieceScanner, PiecesCoverTheText) {
    const std::string text = "  x\t\n y'll  z\u2028\u00A0!! 42\u3000";
    std::string joined;
    for (const std::string& piece : pieces_of(text)) {
        EXPECT_FALSE(piece.empty());
        joined += piece;
    }
    EXPECT_EQ(joined, text);
}

TEST(Utf8, ReplacesMaximalSubpartsAsUnicodeRecommends) {
    // The example of Unicode 15, section 3.9, table 3-8.
    EXPECT_EQ(lossy("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
              "a\uFFFD\uFFFD\uFFFD"
              "b\uFFFD"
              "c\uFFFD\uFFFD"
              "d");
    EXPECT_EQ(lossy("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");            // surrogate
    EXPECT_EQ(lossy("\xC0\xAF"), "\uFFFD\uFFFD");                      // overlong
    EXPECT_EQ(lossy("\xF4\x90\x80\x80"), "\uFFFD\uFFFD\uFFFD\uFFFD");  // above U+10FFFF
    EXPECT_EQ(lossy("ok\xF0\x9F\x98"), "ok\uFFFD");                    // truncated at the end
    EXPECT_EQ(lossy("caf\xC3\xA9"), "caf\u00E9");
    EXPECT_FALSE(is_valid_utf8("\xF0\x9F\x98"));
    EXPECT_TRUE(is_valid_utf8("\xF0\x9F\x98\x80"));
}

TEST(Utf8, TruncatedTailIsOnlyAWellFormedPrefix) {
    EXPECT_EQ(truncated_tail_length("abc\xF0\x9F\x98"), 3u);
    EXPECT_EQ(truncated_tail_length("\xC3"), 1u);
    EXPECT_EQ(truncated_tail_length("\xF0\x9F\x98\x80"), 0u);
    EXPECT_EQ(truncated_tail_length("\xE0\x80"), 0u);  // can never become well-formed
    EXPECT_EQ(truncated_tail_length("\x80\x80\x80"), 0u);
    EXPECT_EQ(truncated_tail_length(""), 0u);
}

TEST(ByteLevel, AlphabetIsABijectionOverAllBytes) {
    std::set<char32_t> seen;
    for (int byte = 0; byte < 256; ++byte) {
        const std::string raw(1, static_cast<char>(byte));
        seen.insert(byte_to_vocab_char(static_cast<std::uint8_t>(byte)));
        EXPECT_EQ(vocab_text_to_bytes(bytes_to_vocab_text(raw)), raw) << byte;
    }
    EXPECT_EQ(seen.size(), 256u);
    EXPECT_EQ(byte_to_vocab_char(' '), U'\u0120');  // "Ġ"
    EXPECT_EQ(vocab_text_to_bytes("\u0120the"), " the");
    EXPECT_EQ(vocab_text_to_bytes("\u20AC"), std::nullopt);  // outside the alphabet
    EXPECT_EQ(vocab_text_to_bytes("\xFF"), std::nullopt);    // not UTF-8
}

Tokenizer tiny_tokenizer(const std::vector<std::string>& extra,
                         const std::vector<std::pair<std::string, std::string>>& merges,
                         nlohmann::json added = nlohmann::json::array()) {
    return Tokenizer::from_tokenizer_json_text(
        testing::byte_level_tokenizer_json(extra, merges, std::move(added)).dump(), "tiny");
}

TEST(Bpe, LowerRankMergesFirstWhereverItIs) {
    // Ids: bytes 0..255, then "ab" 256, "bc" 257, "abc" 258.
    const Tokenizer bc_first = tiny_tokenizer({"ab", "bc", "abc"}, {{"b", "c"}, {"a", "b"}});
    EXPECT_EQ(bc_first.encode("abc"), (std::vector<TokenId>{'a', 257}));
    const Tokenizer ab_first =
        tiny_tokenizer({"ab", "bc", "abc"}, {{"a", "b"}, {"b", "c"}, {"ab", "c"}});
    EXPECT_EQ(ab_first.encode("abc"), (std::vector<TokenId>{258}));
}

TEST(Bpe, EqualRanksMergeLeftmostFirst) {
    const Tokenizer tokenizer = tiny_tokenizer({"aa", "aaaa"}, {{"a", "a"}, {"aa", "aa"}});
    EXPECT_EQ(tokenizer.encode("aaa"), (std::vector<TokenId>{256, 'a'}));
    EXPECT_EQ(tokenizer.encode("aaaaa"), (std::vector<TokenId>{257, 'a'}));
    EXPECT_EQ(tokenizer.decode(tokenizer.encode("aaaaa")), "aaaaa");
}

TEST(Bpe, LongPiecesStayCorrect) {
    const Tokenizer tokenizer = tiny_tokenizer({"aa", "aaaa"}, {{"a", "a"}, {"aa", "aa"}});
    const std::string text(10001, 'a');  // longer than what the cache keeps
    const std::vector<TokenId> ids = tokenizer.encode(text);
    ASSERT_EQ(ids.size(), 2501u);
    EXPECT_EQ(ids.back(), 'a');
    EXPECT_EQ(tokenizer.decode(ids), text);
}

TEST(AddedTokens, LeftmostLongestAndOnlyInEncode) {
    const nlohmann::json added = {
        {{"id", 256}, {"content", "<a>"}, {"special", true}},
        {{"id", 257}, {"content", "<a><b>"}, {"special", true}},
        {{"id", 258}, {"content", "[x]"}, {"special", false}},
    };
    const Tokenizer tokenizer = tiny_tokenizer({}, {}, added);
    EXPECT_EQ(tokenizer.encode("<a><b>!<a>[x]"), (std::vector<TokenId>{257, '!', 256, 258}));
    EXPECT_EQ(tokenizer.encode_ordinary("<a>"), (std::vector<TokenId>{'<', 'a', '>'}));
    EXPECT_TRUE(tokenizer.is_special(256));
    EXPECT_FALSE(tokenizer.is_special(258));
    EXPECT_FALSE(tokenizer.is_special('a'));
    EXPECT_FALSE(tokenizer.is_special(-1));
    EXPECT_EQ(tokenizer.token_id("[x]"), 258);
    EXPECT_EQ(tokenizer.token_bytes(257), "<a><b>");
    EXPECT_EQ(tokenizer.vocab_size(), 259u);
    EXPECT_EQ(tokenizer.decode(tokenizer.encode("z<a><b>z")), "z<a><b>z");
}

TEST(Encode, InvalidUtf8IsReplacedLikePythonsDecodeWithReplace) {
    const Tokenizer tokenizer = tiny_tokenizer({}, {});
    const std::string broken =
        "a\xFF"
        "b\xF0\x9F"
        " c";
    EXPECT_EQ(tokenizer.encode(broken), tokenizer.encode(lossy(broken)));
    EXPECT_EQ(tokenizer.encode_ordinary(broken), tokenizer.encode(lossy(broken)));
    EXPECT_EQ(tokenizer.decode(tokenizer.encode(broken)), lossy(broken));
}

TEST(Streaming, InvalidIdThrowsAndLeavesTheStreamIntact) {
    const Tokenizer tokenizer = tiny_tokenizer({}, {});
    StreamingDetokenizer detokenizer(tokenizer);
    EXPECT_EQ(detokenizer.push(0xE2), "");
    EXPECT_EQ(detokenizer.push(0x82), "");
    EXPECT_THROW(detokenizer.push(999), Error);
    EXPECT_EQ(detokenizer.push(0xAC), "\u20AC");
    EXPECT_EQ(detokenizer.push(0xE2), "");
    EXPECT_EQ(detokenizer.finish(), "\uFFFD");
    EXPECT_EQ(detokenizer.push('x'), "x");  // usable again after finish()
}

TEST(Streaming, BrokenSequenceIsEmittedAsSoonAsItCannotBeCompleted) {
    const Tokenizer tokenizer = tiny_tokenizer({}, {});
    StreamingDetokenizer detokenizer(tokenizer);
    EXPECT_EQ(detokenizer.push(0xF0), "");
    EXPECT_EQ(detokenizer.push('a'),
              "\uFFFD"
              "a");
    EXPECT_EQ(detokenizer.push(0x80), "\uFFFD");
}

}  // namespace
}  // namespace llmserve::tokenizer
