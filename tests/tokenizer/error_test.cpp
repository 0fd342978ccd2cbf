// Every load or decode failure is an llmserve::Error of the right code whose message names the
// file, field, token or id at fault.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>

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

// A JSON of `base` with `path` (e.g. {"decoder"}) set to `value`, refused as kUnsupported with a
// message naming the file and every fragment.
void expect_refused(nlohmann::json base, const std::string& key, const nlohmann::json& value,
                    const std::vector<std::string>& fragments) {
    base[key] = value;
    std::vector<std::string> expected = {"t.json"};
    expected.insert(expected.end(), fragments.begin(), fragments.end());
    expect_error([&] { Tokenizer::from_tokenizer_json_text(base.dump(), "t.json"); },
                 ErrorCode::kUnsupported, expected);
}

TEST(LoadErrors, OtherTokenizerConfigurationsAreRefused) {
    for (const char* model_type : {"WordPiece", "Unigram", "WordLevel"}) {
        nlohmann::json other = tiny_json();
        other["model"]["type"] = model_type;
        expect_error([&] { Tokenizer::from_tokenizer_json_text(other.dump(), "t.json"); },
                     ErrorCode::kUnsupported, {"t.json", "model.type", model_type});
    }
    nlohmann::json dropout = tiny_json();
    dropout["model"]["dropout"] = 0.1;
    expect_error([&] { Tokenizer::from_tokenizer_json_text(dropout.dump(), "t.json"); },
                 ErrorCode::kUnsupported, {"t.json", "model.dropout"});
    nlohmann::json suffix = tiny_json();
    suffix["model"]["end_of_word_suffix"] = "</w>";
    expect_error([&] { Tokenizer::from_tokenizer_json_text(suffix.dump(), "t.json"); },
                 ErrorCode::kUnsupported, {"t.json", "model.end_of_word_suffix"});

    expect_refused(tiny_json(), "normalizer", {{"type", "Lowercase"}}, {"normalizer", "Lowercase"});
    expect_refused(
        tiny_json(), "normalizer",
        {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Precompiled"}}}}},
        {"normalizer.normalizers[1]", "Precompiled"});
    expect_refused(tiny_json(), "pre_tokenizer", {{"type", "Whitespace"}},
                   {"pre_tokenizer", "Whitespace"});
    // HF's ByteLevel maps the text to its alphabet, which a later step would see.
    expect_refused(
        tiny_json(), "pre_tokenizer",
        {{"type", "Sequence"},
         {"pretokenizers",
          {{{"type", "ByteLevel"}},
           {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Isolated"}}}}},
        {"pre_tokenizer.pretokenizers[1]", "after ByteLevel"});
    expect_refused(tiny_json(), "pre_tokenizer",
                   {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Sideways"}},
                   {"pre_tokenizer.behavior", "Sideways"});
    expect_refused(
        tiny_json(), "pre_tokenizer",
        {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}},
        {"pre_tokenizer.pattern", "(unclosed"});
    expect_refused(tiny_json(), "pre_tokenizer",
                   {{"type", "Metaspace"}, {"replacement", "_"}, {"prepend_scheme", "sometimes"}},
                   {"pre_tokenizer.prepend_scheme", "sometimes"});
    expect_refused(tiny_json(), "decoder", {{"type", "WordPiece"}},
                   {"decoder", "ByteLevel decoder alone"});
    expect_refused(tiny_json(), "post_processor", {{"type", "Mystery"}},
                   {"post_processor", "Mystery"});
    expect_refused(tiny_json(), "post_processor",
                   {{"type", "TemplateProcessing"},
                    {"single", {{{"Sequence", {{"id", "B"}, {"type_id", 0}}}}}},
                    {"special_tokens", nlohmann::json::object()}},
                   {"post_processor.single", "$A"});
}

// A SentencePiece-style tokenizer.json: characters a, b, c, the space marker and <0x00>..<0xFF>.
nlohmann::json sentencepiece_json() {
    nlohmann::json vocab = {{"<unk>", 0}, {"\u2581", 1}, {"a", 2}, {"b", 3}, {"c", 4}, {"ab", 5}};
    for (int byte = 0; byte < 256; ++byte) vocab[fmt::format("<0x{:02X}>", byte)] = 6 + byte;
    return {{"model",
             {{"type", "BPE"},
              {"vocab", vocab},
              {"merges", {"a b"}},
              {"byte_fallback", true},
              {"unk_token", "<unk>"}}},
            {"normalizer",
             {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}},
            {"decoder",
             {{"type", "Sequence"},
              {"decoders",
               {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                {{"type", "ByteFallback"}},
                {{"type", "Fuse"}}}}}}};
}

TEST(LoadErrors, DecodersThatCannotBeReproducedAreRefused) {
    EXPECT_NO_THROW(Tokenizer::from_tokenizer_json_text(sentencepiece_json().dump(), "t.json"));
    nlohmann::json no_decoder = sentencepiece_json();
    no_decoder.erase("decoder");
    expect_error([&] { Tokenizer::from_tokenizer_json_text(no_decoder.dump(), "t.json"); },
                 ErrorCode::kUnsupported, {"t.json", "decoder null"});
    expect_refused(sentencepiece_json(), "decoder", {{"type", "ByteLevel"}},
                   {"decoder", "ByteLevel pre-tokenizer"});
    expect_refused(sentencepiece_json(), "decoder", {{"type", "CTC"}}, {"decoder", "CTC"});
    expect_refused(sentencepiece_json(), "decoder",
                   {{"type", "Replace"}, {"pattern", {{"Regex", "x+"}}}, {"content", "y"}},
                   {"decoder", "String"});
    expect_refused(
        sentencepiece_json(), "decoder",
        {{"type", "Sequence"}, {"decoders", {{{"type", "Fuse"}}, {{"type", "ByteFallback"}}}}},
        {"decoder.decoders[1]", "after Fuse"});
}

TEST(LoadErrors, TokenizerConfigNamesUnknownTokens) {
    const std::string json = sentencepiece_json().dump();
    expect_error(
        [&] { Tokenizer::from_tokenizer_json_text(json, "t.json", R"({"bos_token": "<s>"})"); },
        ErrorCode::kCorruptData, {"tokenizer_config", "bos_token", "<s>"});
    expect_error(
        [&] {
            Tokenizer::from_tokenizer_json_text(json, "t.json",
                                                R"({"tokenizer_class": "LlamaTokenizer"})");
        },
        ErrorCode::kCorruptData, {"tokenizer_config", "add_bos_token"});
    expect_error(
        [&] { Tokenizer::from_tokenizer_json_text(json, "t.json", R"({"eos_token": 7})"); },
        ErrorCode::kCorruptData, {"tokenizer_config", "eos_token"});
    nlohmann::json unk = sentencepiece_json();
    unk["model"]["unk_token"] = "<nope>";
    expect_error([&] { Tokenizer::from_tokenizer_json_text(unk.dump(), "t.json"); },
                 ErrorCode::kCorruptData, {"t.json", "unk_token", "<nope>"});
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
