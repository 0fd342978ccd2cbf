// A context-free grammar over bytes: what the GBNF parser produces and the matcher runs. Every
// rule is a list of alternatives; an alternative is a run of elements in one flat array, ended by
// a kEnd element. An element matches one byte from a set, or a whole rule. Unicode character
// classes are lowered to UTF-8 byte sequences at parse time, so the matcher only sees bytes.
#pragma once

#include <bitset>
#include <cstdint>
#include <string>
#include <vector>

namespace llmserve::grammar {

using ByteSet = std::bitset<256>;

struct Element {
    enum class Kind : std::uint8_t { kBytes, kRule, kEnd };
    Kind kind = Kind::kEnd;
    std::uint32_t value = 0;  // kBytes: index into Grammar::byte_sets; kRule: rule index
};

struct Rule {
    std::string name;                         // as written, or "<parent>-<n>" for a generated rule
    std::vector<std::uint32_t> alternatives;  // start positions in Grammar::elements
};

// Bounds that keep a hostile grammar from stalling or exhausting the process: compiling checks
// them and refuses with kInvalidArgument naming the bound.
struct GrammarLimits {
    std::size_t max_elements = 1'000'000;
    std::size_t max_rules = 100'000;
    std::size_t max_repetition = 10'000;  // n in x{m,n}
};

struct Grammar {
    std::vector<Element> elements;
    std::vector<ByteSet> byte_sets;
    std::vector<Rule> rules;
    std::uint32_t root = 0;
    std::string source;  // the GBNF text it was parsed from (also the cache key)
};

}  // namespace llmserve::grammar
