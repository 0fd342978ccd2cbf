// Shared by the grammar fuzzers: a compiled grammar must also run; errors must be llmserve::Error.
#pragma once

#include <string_view>

#include "common/error.h"
#include "grammar/constraint.h"

namespace llmserve::grammar::fuzz {

// Parses `gbnf` and feeds `probe` to a matcher; Error (bad grammar, limits) is fine.
inline void exercise(const std::string& gbnf, std::string_view probe) {
    try {
        const Constraint constraint(gbnf);
        Matcher matcher(constraint);
        for (const char c : probe)
            if (!matcher.accept(std::string_view(&c, 1))) break;
        (void)matcher.can_end();
    } catch (const Error&) {
    }
}

}  // namespace llmserve::grammar::fuzz
