// JSON Schema → grammar against the official JSON Schema Test Suite (Debian package
// json-schema-test-suite, draft 7 files of the supported keywords; $LLMSERVE_JSON_SCHEMA_SUITE
// overrides the folder). A schema the compiler refuses (an unsupported keyword) is skipped; for
// every other, each test instance serialized canonically (nlohmann::json::dump: compact, keys
// sorted, which is why the grammar is built with sorted_properties) must be accepted exactly
// when the suite calls it valid. The known, documented deviations are listed with their reasons
// in tests/fixtures/grammar/suite_deviations.json and must match exactly.
#include <gtest/gtest.h>

#include <set>

#include "common/error.h"
#include "grammar/json_schema.h"
#include "tests/grammar/test_support.h"

namespace llmserve::grammar {
namespace {

namespace fs = std::filesystem;

fs::path suite_dir() {
    if (const char* env = std::getenv("LLMSERVE_JSON_SCHEMA_SUITE"); env != nullptr && *env != '\0')
        return env;
    return "/usr/share/json-schema-test-suite/tests/draft7";
}

TEST(JsonSchemaSuite, SupportedKeywordsAgreeWithTheSuite) {
    ASSERT_TRUE(fs::is_directory(suite_dir()))
        << suite_dir() << " is missing: run make deps (Debian package json-schema-test-suite)";
    const auto deviations =
        testing::read_json(testing::grammar_fixtures() / "suite_deviations.json");
    std::set<std::string> expected;
    for (const auto& [key, reason] : deviations.items()) expected.insert(key);
    std::set<std::string> found;
    int compiled = 0, refused = 0, instances = 0;
    for (const char* keyword : {"additionalProperties",
                                "allOf",
                                "anyOf",
                                "boolean_schema",
                                "const",
                                "default",
                                "definitions",
                                "enum",
                                "exclusiveMaximum",
                                "exclusiveMinimum",
                                "items",
                                "maxItems",
                                "maxLength",
                                "maximum",
                                "minItems",
                                "minLength",
                                "minimum",
                                "oneOf",
                                "pattern",
                                "properties",
                                "ref",
                                "required",
                                "type"}) {
        const fs::path file = suite_dir() / (std::string(keyword) + ".json");
        ASSERT_TRUE(fs::exists(file)) << file;
        for (const auto& group : testing::read_json(file)) {
            std::string gbnf;
            try {
                gbnf = json_schema_to_gbnf(group["schema"].dump(), {.sorted_properties = true});
            } catch (const Error& e) {
                std::cout << "refused " << keyword << ": "
                          << group["description"].get<std::string>() << ": " << e.what() << "\n";
                ++refused;
                continue;
            }
            ++compiled;
            const Constraint constraint(gbnf);
            for (const auto& test : group["tests"]) {
                ++instances;
                const bool accepted = testing::matches(constraint, test["data"].dump());
                if (accepted != test["valid"].get<bool>())
                    found.insert(fmt::format("{}: {}: {}", keyword,
                                             group["description"].get<std::string>(),
                                             test["description"].get<std::string>()));
            }
        }
    }
    for (const auto& key : found) EXPECT_TRUE(expected.contains(key)) << "new deviation: " << key;
    for (const auto& key : expected)
        EXPECT_TRUE(found.contains(key)) << "listed deviation no longer happens: " << key;
    std::cout << compiled << " schemas compiled (" << instances << " instances), " << refused
              << " refused for unsupported keywords, " << found.size() << " known deviations\n";
    EXPECT_GE(compiled, 50);
}

}  // namespace
}  // namespace llmserve::grammar
