#include "grammar/grammar_check.h"

#include <fmt/format.h>

#include "common/error.h"

namespace llmserve::grammar {
namespace {

// Rules that can match the empty string (fixed point).
std::vector<bool> nullable_rules(const Grammar& g) {
    std::vector<bool> nullable(g.rules.size(), false);
    for (bool changed = true; changed;) {
        changed = false;
        for (std::size_t r = 0; r < g.rules.size(); ++r) {
            if (nullable[r]) continue;
            for (const std::uint32_t start : g.rules[r].alternatives) {
                std::uint32_t pos = start;
                while (g.elements[pos].kind == Element::Kind::kRule &&
                       nullable[g.elements[pos].value])
                    ++pos;
                if (g.elements[pos].kind == Element::Kind::kEnd) {
                    nullable[r] = true;
                    changed = true;
                    break;
                }
            }
        }
    }
    return nullable;
}

}  // namespace

void check_left_recursion(const Grammar& g) {
    const auto nullable = nullable_rules(g);
    // left_corners[r]: rules r may expand to before consuming a byte.
    std::vector<std::vector<std::uint32_t>> left_corners(g.rules.size());
    for (std::size_t r = 0; r < g.rules.size(); ++r) {
        for (const std::uint32_t start : g.rules[r].alternatives) {
            for (std::uint32_t pos = start; g.elements[pos].kind == Element::Kind::kRule; ++pos) {
                left_corners[r].push_back(g.elements[pos].value);
                if (!nullable[g.elements[pos].value]) break;
            }
        }
    }
    enum class Mark : std::uint8_t { kNew, kOpen, kDone };
    std::vector<Mark> marks(g.rules.size(), Mark::kNew);
    std::vector<std::uint32_t> path;
    // Iterative DFS: (rule, next corner index).
    for (std::uint32_t start = 0; start < g.rules.size(); ++start) {
        if (marks[start] != Mark::kNew) continue;
        std::vector<std::pair<std::uint32_t, std::size_t>> stack{{start, 0}};
        marks[start] = Mark::kOpen;
        while (!stack.empty()) {
            auto& [rule, next] = stack.back();
            if (next == left_corners[rule].size()) {
                marks[rule] = Mark::kDone;
                stack.pop_back();
                continue;
            }
            const std::uint32_t child = left_corners[rule][next++];
            if (marks[child] == Mark::kOpen) {
                std::string cycle;
                bool in_cycle = false;
                for (const auto& [r, unused] : stack) {
                    in_cycle = in_cycle || r == child;
                    if (in_cycle) cycle += g.rules[r].name + " -> ";
                }
                cycle += g.rules[child].name;
                fail_param("grammar",
                           "grammar: rule '{}' is left-recursive ({}); rewrite it with repetition "
                           "(x ::= y z*) — a rule (or a repetition of something that can match "
                           "nothing) may not reach itself without consuming a character",
                           g.rules[child].name, cycle);
            }
            if (marks[child] == Mark::kNew) {
                marks[child] = Mark::kOpen;
                stack.emplace_back(child, 0);
            }
        }
    }
}

}  // namespace llmserve::grammar
