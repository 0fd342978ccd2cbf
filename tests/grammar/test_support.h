// Helpers shared by the grammar tests.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <random>
#include <string>
#include <string_view>

#include "grammar/constraint.h"
#include "tests/common/test_paths.h"

namespace llmserve::grammar::testing {

inline nlohmann::json read_json(const std::filesystem::path& path) {
    std::ifstream in(path);
    EXPECT_TRUE(in.is_open()) << "cannot open " << path;
    return nlohmann::json::parse(in);
}

inline std::filesystem::path grammar_fixtures() {
    return llmserve::testing::fixtures_dir() / "grammar";
}

// Whether `constraint` accepts exactly `text` (a complete sentence, byte by byte).
inline bool matches(const Constraint& constraint, std::string_view text) {
    Matcher matcher(constraint);
    return matcher.accept(text) && matcher.can_end();
}

}  // namespace llmserve::grammar::testing

namespace llmserve::grammar::testing {

// Compares Matcher::fill_mask with trying every token's bytes on a copy of the matcher, at
// `steps` states reached by sampling allowed tokens with `rng` (restarting when a sentence ends).
// Returns the number of states checked.
template <typename Rng>
int check_masks_against_brute_force(const Constraint& constraint, const Vocabulary& vocabulary,
                                    const std::vector<std::string>& token_bytes,
                                    const std::vector<bool>& special, int steps, Rng& rng) {
    Matcher matcher(constraint);
    std::vector<std::uint32_t> mask(vocabulary.mask_words());
    int checked = 0;
    for (int step = 0; step < steps; ++step) {
        matcher.fill_mask(vocabulary, mask);
        std::vector<TokenId> allowed;
        for (std::size_t id = 0; id < token_bytes.size(); ++id) {
            const auto t = static_cast<TokenId>(id);
            const bool is_eos = std::find(vocabulary.eos_ids().begin(), vocabulary.eos_ids().end(),
                                          t) != vocabulary.eos_ids().end();
            bool expected;
            if (is_eos) {
                expected = matcher.can_end();
            } else if (special[id] || token_bytes[id].empty()) {
                expected = false;
            } else {
                Matcher copy = matcher;
                expected = copy.accept(token_bytes[id]);
            }
            const bool got = mask_allows(mask, t);
            if (got != expected) {
                ADD_FAILURE() << "token " << id << " '" << token_bytes[id] << "' at step " << step
                              << ": mask says " << got << ", brute force " << expected;
                return checked;
            }
            if (got && !is_eos) allowed.push_back(t);
        }
        ++checked;
        if (allowed.empty()) {
            matcher = Matcher(constraint);
            continue;
        }
        const TokenId pick =
            allowed[std::uniform_int_distribution<std::size_t>(0, allowed.size() - 1)(rng)];
        EXPECT_TRUE(matcher.accept(token_bytes[pick]));
    }
    return checked;
}

}  // namespace llmserve::grammar::testing
