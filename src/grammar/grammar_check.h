// Checks a grammar must pass before the matcher may run it.
#pragma once

#include "grammar/grammar.h"

namespace llmserve::grammar {

// Throws Error(kInvalidArgument, param "grammar") naming the cycle when a rule can reach itself
// without consuming a byte (left recursion, including through rules that may match nothing):
// a pushdown matcher would loop on it.
void check_left_recursion(const Grammar& grammar);

}  // namespace llmserve::grammar
