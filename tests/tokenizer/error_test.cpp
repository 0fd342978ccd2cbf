// Every load or decode failure is an llmserve::Error of the right code whose message names the
// file, field, token or id at fault.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "common/error.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::tokenizer {
namespace {

using testing::byte_level_tokenizer_json;
using testing::ScratchDir;

// Runs `load`, expecting an Error of `code` whose message contains every one of `fragments`.
void expect_error(const std::function<void()>& load, ErrorCode code,
                  const std::vector<std::string>& fragments) {
    try {
        load();
        ADD_FAILURE() << "no error thrown";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), code) << error.what();
        for (const std::string& fragment : fragments) {
            EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos)
                << "message '" << error.what() << "' lacks '" << fragment << "'";
        }
    }
}

nlohmann::json tiny_json() {
    return byte_level_tokenizer_json({"ab"}, {{"a", "b"}});
}

std::string vocab_json_of(const nlohmann::json& tokenizer_json) {
    return tokenizer_json.at("model").at("vocab").dump();
}

TEST(LoadErrors, MissingDirectoryAndFiles) {
    const ScratchDir scratch;
    const auto missing = scratch.path() / "no-such-model";
    expect_error([&] { Tokenizer::from_directory(missing); }, ErrorCode::kNotFound,
                 {missing.string()});
    expect_error([&] { Tokenizer::from_directory(scratch.path()); }, ErrorCode::kNotFound,
                 {scratch.path().string(), "tokenizer.json", "merges.txt"});
    expect_error([&] { Tokenizer::from_tokenizer_json(scratch.path() / "tokenizer.json"); },
                 ErrorCode::kNotFound, {(scratch.path() / "tokenizer.json").string()});
    const auto vocab = scratch.write("vocab.json", vocab_json_of(tiny_json()));
    expect_error([&] { Tokenizer::from_vocab_and_merges(vocab, scratch.path() / "merges.txt"); },
                 ErrorCode::kNotFound, {(scratch.path() / "merges.txt").string()});
    // vocab.json alone is not enough for from_directory either.
    expect_error([&] { Tokenizer::from_directory(scratch.path()); }, ErrorCode::kNotFound,
                 {scratch.path().string()});
}

TEST(LoadErrors, DirectoryPrefersTokenizerJson) {
    const ScratchDir scratch;
    scratch.write("tokenizer.json", tiny_json().dump());
    scratch.write("vocab.json", "not json");
    EXPECT_EQ(Tokenizer::from_directory(scratch.path()).encode("ab"), (std::vector<TokenId>{256}));
}

TEST(LoadErrors, MalformedJsonNamesTheFile) {
    const ScratchDir scratch;
    const std::string truncated = tiny_json().dump().substr(0, 100);
    const auto tokenizer_json = scratch.write("tokenizer.json", truncated);
    expect_error([&] { Tokenizer::from_tokenizer_json(tokenizer_json); }, ErrorCode::kCorruptData,
                 {tokenizer_json.string(), "invalid JSON"});
    const auto vocab = scratch.write("vocab.json", "{\"a\": 0,");
    const auto merges = scratch.write("merges.txt", "#version: 0.2\n");
    expect_error([&] { Tokenizer::from_vocab_and_merges(vocab, merges); }, ErrorCode::kCorruptData,
                 {vocab.string(), "invalid JSON"});
    expect_error([] { Tokenizer::from_tokenizer_json_text("[1, 2]", "inline.json"); },
                 ErrorCode::kCorruptData, {"inline.json", "top level"});
}

TEST(LoadErrors, MalformedFieldsAreNamed) {
    nlohmann::json no_merges = tiny_json();
    no_merges["model"].erase("merges");
    expect_error([&] { Tokenizer::from_tokenizer_json_text(no_merges.dump(), "t.json"); },
                 ErrorCode::kCorruptData, {"t.json", "model.merges"});

    nlohmann::json bad_id = tiny_json();
    bad_id["model"]["vocab"]["ab"] = "seven";
    expect_error([&] { Tokenizer::from_tokenizer_json_text(bad_id.dump(), "t.json"); },
                 ErrorCode::kCorruptData, {"t.json", "model.vocab[\"ab\"]", "\"seven\""});

    nlohmann::json huge_id = tiny_json();
    huge_id["model"]["vocab"]["ab"] = 4000000000LL;
    expect_error([&] { Tokenizer::from_tokenizer_json_text(huge_id.dump(), "t.json"); },
                 ErrorCode::kCorruptData, {"t.json", "4000000000"});

    nlohmann::json shared_id = tiny_json();
    shared_id["model"]["vocab"]["ab"] = 0;
    expect_error([&] { Tokenizer::from_tokenizer_json_text(shared_id.dump(), "t.json"); },
                 ErrorCode::kCorruptData, {"t.json", "share the id 0"});

    nlohmann::json bad_merge = tiny_json();
    bad_merge["model"]["merges"] = {42};
    expect_error([&] { Tokenizer::from_tokenizer_json_text(bad_merge.dump(), "t.json"); },
                 ErrorCode::kCorruptData, {"t.json", "model.merges[0]"});

    nlohmann::json no_byte = tiny_json();
    no_byte["model"]["vocab"].erase("\u0120");  // the token for the space byte
    expect_error([&] { Tokenizer::from_tokenizer_json_text(no_byte.dump(), "t.json"); },
                 ErrorCode::kCorruptData, {"t.json", "byte 0x20"});

    nlohmann::json foreign = tiny_json();
    foreign["model"]["vocab"]["\u20AC"] = 300;
    expect_error([&] { Tokenizer::from_tokenizer_json_text(foreign.dump(), "t.json"); },
                 ErrorCode::kCorruptData, {"t.json", "\u20AC", "300"});
}

TEST(LoadErrors, MergesNamingUnknownTokens) {
    nlohmann::json unknown = tiny_json();
    unknown["model"]["merges"].push_back("a zz");
    expect_error([&] { Tokenizer::from_tokenizer_json_text(unknown.dump(), "t.json"); },
                 ErrorCode::kCorruptData, {"t.json", "model.merges[1]", "\"zz\""});

    nlohmann::json unknown_pair = tiny_json();
    unknown_pair["model"]["merges"].push_back({"qq", "b"});
    expect_error([&] { Tokenizer::from_tokenizer_json_text(unknown_pair.dump(), "t.json"); },
                 ErrorCode::kCorruptData, {"t.json", "model.merges[1]", "\"qq\""});

    nlohmann::json no_result = tiny_json();
    no_result["model"]["merges"].push_back("b c");  // "bc" is not a token
    expect_error([&] { Tokenizer::from_tokenizer_json_text(no_result.dump(), "t.json"); },
                 ErrorCode::kCorruptData, {"t.json", "model.merges[1]", "produces", "\"bc\""});

    const ScratchDir scratch;
    const auto vocab = scratch.write("vocab.json", vocab_json_of(tiny_json()));
    const auto merges = scratch.write("merges.txt", "#version: 0.2\na b\na zz\n");
    expect_error([&] { Tokenizer::from_vocab_and_merges(vocab, merges); }, ErrorCode::kCorruptData,
                 {merges.string(), "line 3", "\"zz\""});
    const auto malformed = scratch.write("merges2.txt", "a b\r\na b c\n");
    expect_error([&] { Tokenizer::from_vocab_and_merges(vocab, malformed); },
                 ErrorCode::kCorruptData, {malformed.string(), "line 2", "a b c"});
    // CRLF line ends and the version line are accepted.
    const auto crlf = scratch.write("merges3.txt", "#version: 0.2\r\na b\r\n");
    EXPECT_EQ(Tokenizer::from_vocab_and_merges(vocab, crlf).encode("ab"),
              (std::vector<TokenId>{256}));
}

TEST(LoadErrors, OtherTokenizerConfigurationsAreRefused) {
    nlohmann::json metaspace = tiny_json();
    metaspace["pre_tokenizer"] = {{"type", "Metaspace"}};
    expect_error([&] { Tokenizer::from_tokenizer_json_text(metaspace.dump(), "t.json"); },
                 ErrorCode::kUnsupported, {"t.json", "pre_tokenizer", "Metaspace"});

    nlohmann::json prefix_space = tiny_json();
    prefix_space["pre_tokenizer"]["add_prefix_space"] = true;
    expect_error([&] { Tokenizer::from_tokenizer_json_text(prefix_space.dump(), "t.json"); },
                 ErrorCode::kUnsupported, {"t.json", "add_prefix_space"});

    nlohmann::json wordpiece = tiny_json();
    wordpiece["model"]["type"] = "WordPiece";
    expect_error([&] { Tokenizer::from_tokenizer_json_text(wordpiece.dump(), "t.json"); },
                 ErrorCode::kUnsupported, {"t.json", "WordPiece"});

    nlohmann::json normalizer = tiny_json();
    normalizer["normalizer"] = {{"type", "NFC"}};
    expect_error([&] { Tokenizer::from_tokenizer_json_text(normalizer.dump(), "t.json"); },
                 ErrorCode::kUnsupported, {"t.json", "normalizer"});

    const nlohmann::json lstrip =
        byte_level_tokenizer_json({}, {}, {{{"id", 256}, {"content", "<m>"}, {"lstrip", true}}});
    expect_error([&] { Tokenizer::from_tokenizer_json_text(lstrip.dump(), "t.json"); },
                 ErrorCode::kUnsupported, {"t.json", "added_tokens[0]", "<m>", "lstrip"});
}

TEST(LoadErrors, ConflictingAddedTokens) {
    const nlohmann::json wrong_id =
        byte_level_tokenizer_json({"ab"}, {}, {{{"id", 5}, {"content", "ab"}}});
    expect_error([&] { Tokenizer::from_tokenizer_json_text(wrong_id.dump(), "t.json"); },
                 ErrorCode::kCorruptData, {"t.json", "\"ab\"", "id 5"});
    const nlohmann::json empty =
        byte_level_tokenizer_json({}, {}, {{{"id", 300}, {"content", ""}}});
    expect_error([&] { Tokenizer::from_tokenizer_json_text(empty.dump(), "t.json"); },
                 ErrorCode::kCorruptData, {"t.json", "added_tokens[0]"});
}

TEST(DecodeErrors, OutOfRangeIdsAreNamed) {
    const Tokenizer tokenizer = Tokenizer::from_tokenizer_json_text(tiny_json().dump(), "tiny");
    const TokenId past_end = static_cast<TokenId>(tokenizer.vocab_size());
    expect_error(
        [&] {
            tokenizer.decode(std::vector<TokenId>{'a', past_end});
        },
        ErrorCode::kInvalidArgument, {std::to_string(past_end)});
    expect_error([&] { tokenizer.decode(std::vector<TokenId>{-7}); }, ErrorCode::kInvalidArgument,
                 {"-7"});
    expect_error([&] { tokenizer.token_bytes(123456); }, ErrorCode::kInvalidArgument, {"123456"});
    StreamingDetokenizer detokenizer(tokenizer);
    expect_error([&] { detokenizer.push(past_end); }, ErrorCode::kInvalidArgument,
                 {std::to_string(past_end)});
    // An id inside the range that names no token (a gap) is refused the same way.
    const nlohmann::json gap =
        byte_level_tokenizer_json({}, {}, {{{"id", 300}, {"content", "<g>"}}});
    const Tokenizer gapped = Tokenizer::from_tokenizer_json_text(gap.dump(), "gap");
    EXPECT_EQ(gapped.vocab_size(), 301u);
    expect_error([&] { gapped.token_bytes(299); }, ErrorCode::kInvalidArgument, {"299"});
}

}  // namespace
}  // namespace llmserve::tokenizer
