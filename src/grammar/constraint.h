// What a request constrains its output with (a GBNF grammar, a JSON Schema, any JSON object, a
// regex or a list of choices), compiled once per distinct description, and the per-sequence
// Matcher that walks it and masks the vocabulary.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/automaton.h"
#include "grammar/grammar.h"
#include "grammar/vocabulary.h"

namespace llmserve::grammar {

struct ConstraintSpec {
    enum class Kind { kGrammar, kJsonSchema, kJsonObject, kRegex, kChoice };
    Kind kind = Kind::kGrammar;
    std::string text;                  // GBNF, JSON Schema (JSON text) or regex
    std::vector<std::string> choices;  // kChoice: the output is exactly one of them
    std::string param;                 // the request field errors name ("json_schema", ...)
};

class Constraint {
  public:
    // Parses and checks `gbnf` (see gbnf.h). Throws Error(kInvalidArgument).
    explicit Constraint(std::string gbnf, GrammarLimits limits = {});

    const Grammar& grammar() const { return *grammar_; }
    const std::string& gbnf() const { return grammar_->source; }
    // The automaton matchers start from. One that grew past its memory budget (a long-lived
    // constraint seeing many distinct outputs) is replaced for later matchers; earlier ones keep
    // theirs.
    std::shared_ptr<Automaton> automaton() const;

  private:
    std::shared_ptr<const Grammar> grammar_;
    mutable std::mutex mutex_;
    mutable std::shared_ptr<Automaton> automaton_;
};

// The GBNF text `spec` stands for. Throws Error(kInvalidArgument, param spec.param) naming the
// problem and where it is (a JSON pointer into the schema, a regex offset, a grammar line).
std::string constraint_gbnf(const ConstraintSpec& spec);

// The compiled constraint of `spec`, shared with earlier requests of the same content (a small
// cache keyed by content). Throws as constraint_gbnf and parse_gbnf do.
std::shared_ptr<const Constraint> compile_constraint(const ConstraintSpec& spec);

// One sequence's position in a constraint. Cheap to copy (copies share the automaton).
class Matcher {
  public:
    explicit Matcher(const Constraint& constraint);

    // Advances over `bytes` (a token's bytes); false, and no change, when the grammar refuses them.
    bool accept(std::string_view bytes);
    bool can_end() const;       // the output so far is a complete sentence of the grammar
    bool can_continue() const;  // some byte may still follow
    // Sets bit t of `mask` (vocabulary.mask_words() words) for every token t allowed next:
    // tokens whose bytes the grammar accepts from here, and EOS when it may end here.
    void fill_mask(const Vocabulary& vocabulary, std::span<std::uint32_t> mask) const;

  private:
    std::shared_ptr<Automaton> automaton_;
    StateId state_;
};

}  // namespace llmserve::grammar
