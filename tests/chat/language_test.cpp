// The Jinja language cases of tests/fixtures/jinja/cases.jsonl (from Jinja2 itself, configured as
// transformers configures it; see tests/fixtures/chat/generate.py): each template renders with its
// variables to exactly `rendered`, or raises an Error where Jinja2 raised.
#include <gtest/gtest.h>

#include "chat/chat_template.h"
#include "chat_test_support.h"
#include "common/error.h"

namespace llmserve::chat {
namespace {

TEST(JinjaLanguage, EveryCaseRendersAsJinja2) {
    const auto rows =
        testing::read_jsonl(llmserve::testing::fixtures_dir() / "jinja" / "cases.jsonl");
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const nlohmann::ordered_json& row = rows[i];
        OrderedChatTemplateInputs inputs;
        inputs.extra = row.at("variables");
        std::string rendered;
        try {
            rendered = ChatTemplate::from_source(row.at("template")).render_ordered(inputs);
        } catch (const Error& error) {
            EXPECT_TRUE(row.value("error", false))
                << "case " << i << " raised " << error.what() << ": " << testing::describe(row);
            EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument) << "case " << i;
            const std::string expected = testing::expected_raise_message(row);
            if (!expected.empty()) {
                EXPECT_EQ(error.what(), expected) << "case " << i;
            }
            continue;
        }
        if (row.value("error", false)) {
            ADD_FAILURE() << "case " << i << " should raise " << row.value("error_message", "")
                          << " but rendered " << nlohmann::ordered_json(rendered).dump() << ": "
                          << testing::describe(row);
            continue;
        }
        EXPECT_EQ(rendered, row.at("rendered").get<std::string>())
            << "case " << i << ": " << testing::describe(row);
    }
}

}  // namespace
}  // namespace llmserve::chat
