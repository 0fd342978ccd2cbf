// Every row of every tests/fixtures/chat/<family>.jsonl (or $LLMSERVE_FIXTURES/chat) renders with
// the family's tokenizer_config.json template to exactly `rendered`, or raises where the reference
// (Jinja2 as transformers sets it up) raised: with the template's own message for raise_exception.
#include <gtest/gtest.h>

#include "chat/chat_template.h"
#include "chat_test_support.h"
#include "common/error.h"

namespace llmserve::chat {
namespace {

using testing::chat_families;
using testing::describe;

class ChatFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatFamily, RendersEveryRowExactly) {
    const auto chat_template = ChatTemplate::load(testing::family_dir(GetParam()));
    ASSERT_TRUE(chat_template.has_value()) << GetParam() << " has no chat template";
    const auto rows =
        testing::read_jsonl(llmserve::testing::fixtures_dir() / "chat" / (GetParam() + ".jsonl"));
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const nlohmann::ordered_json& row = rows[i];
        const OrderedChatTemplateInputs inputs = testing::inputs_of(row);
        if (row.value("error", false)) {
            try {
                const std::string rendered = chat_template->render_ordered(inputs);
                ADD_FAILURE() << "row " << i << " should raise (" << row.value("error_message", "")
                              << ") but rendered " << nlohmann::json(rendered).dump();
            } catch (const Error& error) {
                EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument) << "row " << i;
                const std::string expected = testing::expected_raise_message(row);
                if (!expected.empty()) {
                    EXPECT_EQ(error.what(), expected) << "row " << i;
                }
            }
            continue;
        }
        try {
            EXPECT_EQ(chat_template->render_ordered(inputs), row.at("rendered").get<std::string>())
                << "row " << i << ": " << describe(row);
        } catch (const Error& error) {
            ADD_FAILURE() << "row " << i << " raised " << error.what() << ": " << describe(row);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ChatFamily, ::testing::ValuesIn(chat_families()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                             return info.param;
                         });

}  // namespace
}  // namespace llmserve::chat
