// GBNF, llama.cpp's grammar notation: `name ::= alternatives` rules (one per line; newlines are
// allowed after `::=`, after `|` and inside parentheses), sequences, `|`, groups, `*` `+` `?`
// `{m}` `{m,}` `{m,n}`, "literals" and [character classes] (ranges, `^` negation) with the escapes
// \n \r \t \\ \" \[ \] \- \xHH \uHHHH \UHHHHHHHH, `.` (any character), # comments; the grammar
// starts at `root`.
#pragma once

#include <string>
#include <string_view>

#include "grammar/grammar.h"

namespace llmserve::grammar {

// Throws Error(kInvalidArgument, param "grammar") with "line L, column C: ..." for a syntax error,
// an undefined rule, a missing root, a left-recursive rule (the matcher is a pushdown automaton)
// or a grammar beyond `limits`.
Grammar parse_gbnf(std::string_view text, const GrammarLimits& limits = {});

// `text` as a GBNF string literal, quotes included (bytes that need it escaped).
std::string gbnf_literal(std::string_view text);

}  // namespace llmserve::grammar
