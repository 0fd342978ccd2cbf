#include "grammar/constraint.h"

#include <fmt/format.h>

#include <list>
#include <utility>

#include "common/error.h"
#include "grammar/gbnf.h"
#include "grammar/json_schema.h"
#include "grammar/regex.h"

namespace llmserve::grammar {
namespace {

constexpr std::size_t kAutomatonBudgetBytes = std::size_t{256} << 20;
constexpr std::size_t kCacheEntries = 64;

std::string_view kind_name(ConstraintSpec::Kind kind) {
    switch (kind) {
        case ConstraintSpec::Kind::kGrammar:
            return "grammar";
        case ConstraintSpec::Kind::kJsonSchema:
            return "json_schema";
        case ConstraintSpec::Kind::kJsonObject:
            return "json_object";
        case ConstraintSpec::Kind::kRegex:
            return "regex";
        case ConstraintSpec::Kind::kChoice:
            return "choice";
    }
    return "constraint";
}

std::string choice_gbnf(const std::vector<std::string>& choices, const std::string& param) {
    if (choices.empty()) fail_param(param, "{}: the list of choices is empty", param);
    std::string gbnf = "root ::= ";
    for (std::size_t i = 0; i < choices.size(); ++i) {
        if (choices[i].empty())
            fail_param(param, "{}[{}]: a choice may not be the empty string", param, i);
        gbnf += (i == 0 ? "" : " | ") + gbnf_literal(choices[i]);
    }
    return gbnf + "\n";
}

}  // namespace

Constraint::Constraint(std::string gbnf, GrammarLimits limits)
    : grammar_(std::make_shared<const Grammar>(parse_gbnf(gbnf, limits))) {}

std::shared_ptr<Automaton> Constraint::automaton() const {
    std::lock_guard lock(mutex_);
    if (!automaton_ || automaton_->memory_bytes() > kAutomatonBudgetBytes)
        automaton_ = std::make_shared<Automaton>(grammar_);
    return automaton_;
}

std::string constraint_gbnf(const ConstraintSpec& spec) {
    const std::string param = spec.param.empty() ? std::string(kind_name(spec.kind)) : spec.param;
    try {
        switch (spec.kind) {
            case ConstraintSpec::Kind::kGrammar:
                return spec.text;
            case ConstraintSpec::Kind::kJsonSchema:
                return json_schema_to_gbnf(spec.text);
            case ConstraintSpec::Kind::kJsonObject:
                return json_object_gbnf();
            case ConstraintSpec::Kind::kRegex:
                return "root ::= " + regex_to_gbnf(spec.text, RegexMode::kFullMatch) + "\n";
            case ConstraintSpec::Kind::kChoice:
                return choice_gbnf(spec.choices, param);
        }
    } catch (const Error& e) {
        if (e.param() == param) throw;
        throw Error(e.code(), e.what(), param);
    }
    fail(ErrorCode::kInternal, "unknown constraint kind");
}

std::shared_ptr<const Constraint> compile_constraint(const ConstraintSpec& spec) {
    static std::mutex mutex;
    static std::list<std::pair<std::string, std::shared_ptr<const Constraint>>> cache;
    std::string key = fmt::format("{}\n{}", kind_name(spec.kind), spec.text);
    for (const auto& choice : spec.choices) key += fmt::format("\n{}:{}", choice.size(), choice);
    {
        std::lock_guard lock(mutex);
        for (auto it = cache.begin(); it != cache.end(); ++it) {
            if (it->first != key) continue;
            cache.splice(cache.begin(), cache, it);
            return cache.front().second;
        }
    }
    const std::string param = spec.param.empty() ? std::string(kind_name(spec.kind)) : spec.param;
    std::shared_ptr<const Constraint> compiled;
    try {
        compiled = std::make_shared<const Constraint>(constraint_gbnf(spec));
    } catch (const Error& e) {
        if (e.param() == param) throw;
        throw Error(e.code(), e.what(), param);
    }
    std::lock_guard lock(mutex);
    cache.emplace_front(std::move(key), compiled);
    if (cache.size() > kCacheEntries) cache.pop_back();
    return compiled;
}

Matcher::Matcher(const Constraint& constraint)
    : automaton_(constraint.automaton()), state_(automaton_->initial_state()) {}

bool Matcher::accept(std::string_view bytes) {
    const StateId next = automaton_->advance(state_, bytes);
    if (next == kDeadState) return false;
    state_ = next;
    return true;
}

bool Matcher::can_end() const {
    return automaton_->accepting(state_);
}

bool Matcher::can_continue() const {
    return automaton_->has_continuation(state_);
}

void Matcher::fill_mask(const Vocabulary& vocabulary, std::span<std::uint32_t> mask) const {
    automaton_->fill_mask(state_, vocabulary, mask);
}

}  // namespace llmserve::grammar
