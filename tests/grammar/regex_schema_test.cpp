// Regex → grammar and JSON Schema → grammar, from tests/fixtures/grammar/{regex,schema}_cases.json:
// each pattern or schema must accept its valid strings or instances (compact JSON, properties in
// the schema's order) and refuse the invalid ones; each unsupported construct must be refused
// with a message naming it and where it is.
#include <gtest/gtest.h>

#include "common/error.h"
#include "grammar/json_schema.h"
#include "grammar/regex.h"
#include "tests/grammar/test_support.h"

namespace llmserve::grammar {
namespace {

using testing::grammar_fixtures;
using testing::matches;
using testing::read_json;

Constraint regex_constraint(const std::string& pattern, RegexMode mode) {
    const std::string expr = regex_to_gbnf(pattern, mode);
    return Constraint(mode == RegexMode::kFullMatch ? "root ::= " + expr
                                                    : "root ::= \"\\\"\" " + expr + " \"\\\"\"");
}

TEST(RegexTest, FixturePatterns) {
    const auto cases = read_json(grammar_fixtures() / "regex_cases.json");
    for (const auto& [group, mode] : {std::pair{"full_match", RegexMode::kFullMatch},
                                      std::pair{"json_string", RegexMode::kJsonString}}) {
        ASSERT_FALSE(cases[group].empty());
        for (const auto& c : cases[group]) {
            const std::string pattern = c["pattern"].get<std::string>();
            SCOPED_TRACE(std::string(group) + " /" + pattern + "/");
            const Constraint constraint = regex_constraint(pattern, mode);
            for (const auto& s : c["match"])
                EXPECT_TRUE(matches(constraint, s.get<std::string>())) << s;
            for (const auto& s : c["reject"])
                EXPECT_FALSE(matches(constraint, s.get<std::string>())) << s;
        }
    }
}

TEST(RegexTest, FixtureErrorsNameTheConstruct) {
    const auto cases = read_json(grammar_fixtures() / "regex_cases.json");
    ASSERT_FALSE(cases["errors"].empty());
    for (const auto& c : cases["errors"]) {
        const std::string pattern = c["pattern"].get<std::string>();
        SCOPED_TRACE(pattern);
        try {
            regex_to_gbnf(pattern, RegexMode::kFullMatch);
            ADD_FAILURE() << "accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.param(), "regex");
            EXPECT_NE(std::string(e.what()).find(c["message"].get<std::string>()),
                      std::string::npos)
                << e.what();
        }
    }
}

TEST(JsonSchemaTest, FixtureSchemasAcceptValidAndRejectInvalid) {
    const auto cases = read_json(grammar_fixtures() / "schema_cases.json");
    ASSERT_FALSE(cases["schemas"].empty());
    for (const auto& c : cases["schemas"]) {
        SCOPED_TRACE(c["name"].get<std::string>());
        // ordered_json keeps the fixture's property order, which is the schema's.
        const auto ordered = nlohmann::ordered_json::parse(c.dump());
        const Constraint constraint(json_schema_to_gbnf(ordered["schema"].dump()));
        for (const auto& v : ordered["valid"])
            EXPECT_TRUE(matches(constraint, v.dump())) << v.dump();
        for (const auto& v : ordered["invalid"])
            EXPECT_FALSE(matches(constraint, v.dump())) << v.dump();
    }
}

TEST(JsonSchemaTest, FixtureErrorsNameKeywordAndLocation) {
    const auto cases = read_json(grammar_fixtures() / "schema_cases.json");
    ASSERT_FALSE(cases["errors"].empty());
    for (const auto& c : cases["errors"]) {
        SCOPED_TRACE(c["schema"].dump());
        try {
            json_schema_to_gbnf(c["schema"].dump());
            ADD_FAILURE() << "accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
            EXPECT_EQ(e.param(), "json_schema");
            EXPECT_NE(std::string(e.what()).find(c["message"].get<std::string>()),
                      std::string::npos)
                << e.what();
        }
    }
}

TEST(JsonSchemaTest, PropertiesFollowTheSchemaOrder) {
    const std::string schema =
        R"({"type":"object","properties":{"z":{"type":"integer"},"a":{"type":"integer"}},"required":["z","a"]})";
    const Constraint constraint(json_schema_to_gbnf(schema));
    EXPECT_TRUE(matches(constraint, R"({"z":1,"a":2})"));
    EXPECT_FALSE(matches(constraint, R"({"a":2,"z":1})"));
    const Constraint sorted(json_schema_to_gbnf(schema, {.sorted_properties = true}));
    EXPECT_TRUE(matches(sorted, R"({"a":2,"z":1})"));
}

TEST(ConstraintTest, SpecsCompileAndCacheByContent) {
    ConstraintSpec choice{
        ConstraintSpec::Kind::kChoice, "", {"yes", "no", "maybe \"so\""}, "guided_choice"};
    const auto a = compile_constraint(choice);
    EXPECT_EQ(a, compile_constraint(choice));
    EXPECT_TRUE(matches(*a, "maybe \"so\""));
    EXPECT_FALSE(matches(*a, "ye"));
    const auto object = compile_constraint({ConstraintSpec::Kind::kJsonObject, "", {}, ""});
    EXPECT_TRUE(matches(*object, R"({"a":[1,{"b":null}]})"));
    EXPECT_FALSE(matches(*object, "[1]"));
    const auto regex = compile_constraint({ConstraintSpec::Kind::kRegex, "\\d+", {}, ""});
    EXPECT_TRUE(matches(*regex, "42"));
    try {
        compile_constraint({ConstraintSpec::Kind::kJsonSchema,
                            R"({"not":{}})",
                            {},
                            "response_format.json_schema.schema"});
        ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.param(), "response_format.json_schema.schema");
        EXPECT_NE(std::string(e.what()).find("'not'"), std::string::npos) << e.what();
    }
    EXPECT_THROW(compile_constraint({ConstraintSpec::Kind::kChoice, "", {}, "guided_choice"}),
                 Error);
}

}  // namespace
}  // namespace llmserve::grammar
