// The GBNF parser and the matcher, from tests/fixtures/grammar/gbnf_cases.json: every grammar
// there must accept its `match` strings and refuse its `reject` strings; every bad grammar must
// be refused with its message (and position).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "common/error.h"
#include "grammar/gbnf.h"
#include "tests/grammar/test_support.h"

namespace llmserve::grammar {
namespace {

using testing::grammar_fixtures;
using testing::matches;
using testing::read_json;

TEST(GbnfTest, FixtureGrammarsAcceptAndReject) {
    const auto cases = read_json(grammar_fixtures() / "gbnf_cases.json");
    ASSERT_FALSE(cases["grammars"].empty());
    for (const auto& c : cases["grammars"]) {
        SCOPED_TRACE(c["name"].get<std::string>());
        const Constraint constraint(c["grammar"].get<std::string>());
        for (const auto& s : c["match"])
            EXPECT_TRUE(matches(constraint, s.get<std::string>())) << s;
        for (const auto& s : c["reject"])
            EXPECT_FALSE(matches(constraint, s.get<std::string>())) << s;
    }
}

TEST(GbnfTest, FixtureErrorsNameTheProblemAndPosition) {
    const auto cases = read_json(grammar_fixtures() / "gbnf_cases.json");
    ASSERT_FALSE(cases["errors"].empty());
    for (const auto& c : cases["errors"]) {
        const std::string grammar = c["grammar"].get<std::string>();
        SCOPED_TRACE(grammar);
        try {
            parse_gbnf(grammar);
            ADD_FAILURE() << "accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
            EXPECT_EQ(e.param(), "grammar");
            EXPECT_NE(std::string(e.what()).find(c["message"].get<std::string>()),
                      std::string::npos)
                << e.what();
        }
    }
}

TEST(GbnfTest, MatcherRefusesWithoutChangingState) {
    const Constraint constraint("root ::= \"ab\" \"c\"*");
    Matcher matcher(constraint);
    EXPECT_FALSE(matcher.can_end());
    EXPECT_FALSE(matcher.accept("ax"));
    EXPECT_TRUE(matcher.accept("a"));
    EXPECT_FALSE(matcher.accept("c"));
    EXPECT_TRUE(matcher.accept("b"));
    EXPECT_TRUE(matcher.can_end());
    EXPECT_TRUE(matcher.can_continue());
    EXPECT_TRUE(matcher.accept("ccc"));
    const Constraint fixed("root ::= \"ab\"");
    Matcher done(fixed);
    EXPECT_TRUE(done.accept("ab"));
    EXPECT_TRUE(done.can_end());
    EXPECT_FALSE(done.can_continue());
}

TEST(GbnfTest, LongRepetitionKeepsConstantStateCount) {
    // x* is right recursion; tail calls keep the stack flat, so a long run revisits one state.
    const Constraint constraint("root ::= \"[\" [a-z]* \"]\"");
    Matcher matcher(constraint);
    ASSERT_TRUE(matcher.accept("["));
    ASSERT_TRUE(matcher.accept("a"));
    const std::size_t before = constraint.automaton()->memory_bytes();
    ASSERT_TRUE(matcher.accept(std::string(5000, 'q')));
    EXPECT_EQ(constraint.automaton()->memory_bytes(), before);
    EXPECT_TRUE(matcher.accept("]"));
    EXPECT_TRUE(matcher.can_end());
}

TEST(GbnfTest, PathologicalGrammarIsRefusedNotStalled) {
    // Nested counted repetitions multiply: refused at the element bound, not expanded forever.
    std::string gbnf = "root ::= a0\n";
    for (int i = 0; i < 120; ++i) gbnf += fmt::format("a{} ::= a{}{{9999}}\n", i, i + 1);
    gbnf += "a120 ::= \"x\"\n";
    try {
        parse_gbnf(gbnf);
        ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("expands to more than"), std::string::npos)
            << e.what();
    }
}

TEST(GbnfTest, DeepNestingIsRefusedByTheMatcher) {
    const Constraint constraint("root ::= \"(\" root \")\" | \"x\"");
    Matcher matcher(constraint);
    EXPECT_TRUE(matcher.accept(std::string(100, '(')));
    try {
        matcher.accept(std::string(5000, '('));
        ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
        EXPECT_NE(std::string(e.what()).find("deep"), std::string::npos) << e.what();
    }
}

TEST(GbnfTest, LiteralRoundTrips) {
    const std::string text = "a\"b\\c\n\x01é";
    EXPECT_TRUE(matches(Constraint("root ::= " + gbnf_literal(text)), text));
}

}  // namespace
}  // namespace llmserve::grammar
