// Checks against the reference outputs of transformers / tiktoken in tests/fixtures/tokenizer
// (or $LLMSERVE_FIXTURES/tokenizer): every row is discovered from the files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace llmserve::tokenizer {
namespace {

using testing::fixtures_dir;
using testing::read_jsonl;

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";

const Tokenizer& hf_tokenizer() {
    static const Tokenizer tokenizer = Tokenizer::from_tokenizer_json(
        fixtures_dir() / "tokenizer" / "hf_tokenizer_dir" / "tokenizer.json");
    return tokenizer;
}

const Tokenizer& embedded_model_tokenizer() {
    static const Tokenizer tokenizer = Tokenizer::from_vocab_and_merges(
        testing::embedded_model_dir() / "vocab.json", testing::embedded_model_dir() / "merges.txt");
    return tokenizer;
}

const std::vector<nlohmann::json>& encode_rows() {
    static const std::vector<nlohmann::json> rows =
        read_jsonl(fixtures_dir() / "tokenizer" / "encode.jsonl");
    return rows;
}

const std::vector<nlohmann::json>& decode_prefix_rows() {
    static const std::vector<nlohmann::json> rows =
        read_jsonl(fixtures_dir() / "tokenizer" / "decode_prefixes.jsonl");
    return rows;
}

// The row's text, escaped so that control and invisible characters show in failure messages.
std::string describe(const nlohmann::json& row) {
    std::string text = row.at("text").dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
    if (text.size() > 200) text = text.substr(0, 197) + "...";
    return text;
}

::testing::AssertionResult same_ids(const std::vector<TokenId>& actual,
                                    const std::vector<TokenId>& expected) {
    if (actual == expected) return ::testing::AssertionSuccess();
    const auto mismatch =
        std::mismatch(actual.begin(), actual.end(), expected.begin(), expected.end());
    const auto index = mismatch.first - actual.begin();
    auto result = ::testing::AssertionFailure()
                  << "first difference at index " << index << " (got " << actual.size()
                  << " ids, expected " << expected.size() << "): got ";
    if (mismatch.first != actual.end())
        result << *mismatch.first;
    else
        result << "<end>";
    result << ", expected ";
    if (mismatch.second != expected.end())
        result << *mismatch.second;
    else
        result << "<end>";
    return result;
}

std::vector<TokenId> ids_of(const nlohmann::json& value) {
    return value.get<std::vector<TokenId>>();
}

// Streams `ids` and checks each piece is whole UTF-8 and what has been emitted so far is always
// a prefix of the full decode; returns the concatenation.
std::string stream_checked(const Tokenizer& tokenizer, const std::vector<TokenId>& ids,
                           std::string_view full_decode) {
    StreamingDetokenizer detokenizer(tokenizer);
    std::string emitted;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const std::string piece = detokenizer.push(ids[i]);
        EXPECT_TRUE(is_valid_utf8(piece)) << "piece after token " << i;
        emitted += piece;
        EXPECT_TRUE(std::string_view(full_decode).starts_with(emitted))
            << "after token " << i << " emitted text diverges from decode()";
    }
    const std::string last = detokenizer.finish();
    EXPECT_TRUE(is_valid_utf8(last));
    return emitted + last;
}

enum class Source { kHfTokenizerJson, kEmbeddedVocabAndMerges };

void PrintTo(Source source, std::ostream* os) {
    *os << (source == Source::kHfTokenizerJson ? "fixture tokenizer.json"
                                               : "embedded model vocab.json + merges.txt");
}

class FixtureTest : public ::testing::TestWithParam<Source> {
  protected:
    const Tokenizer& tokenizer() const {
        return GetParam() == Source::kHfTokenizerJson ? hf_tokenizer() : embedded_model_tokenizer();
    }
};

TEST_P(FixtureTest, EncodeMatchesTransformersAndTiktoken) {
    for (std::size_t i = 0; i < encode_rows().size(); ++i) {
        const nlohmann::json& row = encode_rows()[i];
        SCOPED_TRACE("encode.jsonl row " + std::to_string(i) + ": " + describe(row));
        const std::string text = row.at("text");
        EXPECT_TRUE(same_ids(tokenizer().encode(text), ids_of(row.at("ids")))) << "encode()";
        EXPECT_TRUE(same_ids(tokenizer().encode_ordinary(text), ids_of(row.at("ids_no_special"))))
            << "encode_ordinary()";
    }
}

TEST_P(FixtureTest, DecodeMatchesTransformers) {
    for (std::size_t i = 0; i < encode_rows().size(); ++i) {
        const nlohmann::json& row = encode_rows()[i];
        SCOPED_TRACE("encode.jsonl row " + std::to_string(i) + ": " + describe(row));
        EXPECT_EQ(tokenizer().decode(ids_of(row.at("ids"))), row.at("decoded").get<std::string>());
        EXPECT_EQ(tokenizer().decode(ids_of(row.at("ids_no_special"))),
                  row.at("text").get<std::string>());
    }
}

TEST_P(FixtureTest, DecodeOfEveryPrefix) {
    for (std::size_t r = 0; r < decode_prefix_rows().size(); ++r) {
        const nlohmann::json& row = decode_prefix_rows()[r];
        const std::vector<TokenId> ids = ids_of(row.at("ids"));
        const auto& prefixes = row.at("prefix_decodes");
        ASSERT_EQ(prefixes.size(), ids.size() + 1) << "decode_prefixes.jsonl row " << r;
        for (std::size_t i = 0; i <= ids.size(); ++i) {
            EXPECT_EQ(tokenizer().decode(std::span(ids).first(i)), prefixes[i].get<std::string>())
                << "decode_prefixes.jsonl row " << r << ", first " << i << " ids";
        }
    }
}

TEST_P(FixtureTest, StreamingHoldsBackOnlyIncompleteCharacters) {
    for (std::size_t r = 0; r < decode_prefix_rows().size(); ++r) {
        const nlohmann::json& row = decode_prefix_rows()[r];
        SCOPED_TRACE("decode_prefixes.jsonl row " + std::to_string(r));
        const std::vector<TokenId> ids = ids_of(row.at("ids"));
        const std::string full = tokenizer().decode(ids);
        StreamingDetokenizer detokenizer(tokenizer());
        std::string emitted;
        for (std::size_t i = 0; i < ids.size(); ++i) {
            const std::string piece = detokenizer.push(ids[i]);
            EXPECT_TRUE(is_valid_utf8(piece)) << "piece after token " << i;
            emitted += piece;
            // decode(ids[:i+1]) is what was emitted plus, at most, the U+FFFD standing for a
            // character still incomplete: nothing final is held back, nothing partial is emitted.
            const std::string prefix = row.at("prefix_decodes")[i + 1];
            ASSERT_TRUE(prefix.starts_with(emitted)) << "after token " << i;
            const std::string_view held = std::string_view(prefix).substr(emitted.size());
            EXPECT_TRUE(held.empty() || held == kReplacementCharacter)
                << "after token " << i << " the detokenizer holds back '" << held << "'";
            EXPECT_TRUE(full.starts_with(emitted)) << "after token " << i;
        }
        EXPECT_EQ(emitted + detokenizer.finish(), full);
    }
}

TEST_P(FixtureTest, StreamingEveryEncodeRowEqualsDecode) {
    for (std::size_t i = 0; i < encode_rows().size(); ++i) {
        const nlohmann::json& row = encode_rows()[i];
        SCOPED_TRACE("encode.jsonl row " + std::to_string(i) + ": " + describe(row));
        for (const char* field : {"ids", "ids_no_special"}) {
            const std::vector<TokenId> ids = ids_of(row.at(field));
            const std::string full = tokenizer().decode(ids);
            EXPECT_EQ(stream_checked(tokenizer(), ids, full), full) << field;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Loaders, FixtureTest,
                         ::testing::Values(Source::kHfTokenizerJson,
                                           Source::kEmbeddedVocabAndMerges),
                         [](const ::testing::TestParamInfo<Source>& info) {
                             return info.param == Source::kHfTokenizerJson
                                        ? std::string("HfTokenizerJson")
                                        : std::string("EmbeddedVocabAndMerges");
                         });

TEST(LoaderAgreement, BothFormatsGiveTheSameVocabulary) {
    const Tokenizer& json_loaded = hf_tokenizer();
    const Tokenizer& files_loaded = embedded_model_tokenizer();
    ASSERT_EQ(json_loaded.vocab_size(), files_loaded.vocab_size());
    for (TokenId id = 0; id < static_cast<TokenId>(json_loaded.vocab_size()); ++id) {
        ASSERT_EQ(json_loaded.token_bytes(id), files_loaded.token_bytes(id)) << "id " << id;
        ASSERT_EQ(json_loaded.is_special(id), files_loaded.is_special(id)) << "id " << id;
    }
}

TEST(LoaderAgreement, TokenizerJsonIdsAndSpecialTokensAreHonoured) {
    std::ifstream stream(fixtures_dir() / "tokenizer" / "hf_tokenizer_dir" / "tokenizer.json");
    const nlohmann::json root = nlohmann::json::parse(stream);
    const Tokenizer& tokenizer = hf_tokenizer();
    TokenId max_id = -1;
    for (const auto& [text, id] : root.at("model").at("vocab").items()) {
        EXPECT_EQ(tokenizer.token_id(text), id.get<TokenId>()) << text;
        max_id = std::max(max_id, id.get<TokenId>());
    }
    for (const nlohmann::json& added : root.at("added_tokens")) {
        const std::string content = added.at("content");
        const TokenId id = added.at("id");
        EXPECT_EQ(tokenizer.token_id(content), id) << content;
        EXPECT_EQ(tokenizer.is_special(id), added.value("special", false)) << content;
        EXPECT_EQ(tokenizer.token_bytes(id), content);
        // A literal added token in the text is split out whole by encode() only.
        EXPECT_EQ(tokenizer.encode("x" + content + "y").size(), 3u) << content;
        EXPECT_EQ(tokenizer.decode(tokenizer.encode_ordinary(content)), content);
        EXPECT_GT(tokenizer.encode_ordinary(content).size(), 1u) << content;
        max_id = std::max(max_id, id);
    }
    EXPECT_EQ(tokenizer.vocab_size(), static_cast<std::size_t>(max_id) + 1);
}

TEST(Concurrency, ParallelEncodesAgreeWithTheFixtures) {
    const Tokenizer& tokenizer = hf_tokenizer();
    const std::vector<nlohmann::json>& rows = encode_rows();
    constexpr int kThreads = 4;
    std::vector<int> mismatches(kThreads, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            // Each thread walks the rows from a different start, so cache fills and reads race.
            for (std::size_t k = 0; k < rows.size(); ++k) {
                const nlohmann::json& row = rows[(k + t * rows.size() / kThreads) % rows.size()];
                if (tokenizer.encode(row.at("text").get<std::string>()) != ids_of(row.at("ids"))) {
                    ++mismatches[t];
                }
            }
        });
    }
    for (std::thread& thread : threads) thread.join();
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

}  // namespace
}  // namespace llmserve::tokenizer
