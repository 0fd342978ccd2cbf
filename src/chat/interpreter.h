// Runs a parsed template: Jinja2's scoping (a for loop's body and a macro get their own scope),
// loop controls, macros and call blocks, under limits that stop a hostile template.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "chat/ast.h"
#include "chat/limits.h"
#include "chat/value.h"

namespace llmserve::chat {

struct Scope {
    std::unordered_map<std::string, Value> variables;
    std::shared_ptr<Scope> parent;
};

class Interpreter {
  public:
    Interpreter(const RenderLimits& limits, std::shared_ptr<Scope> globals);
    ~Interpreter();
    Interpreter(const Interpreter&) = delete;
    Interpreter& operator=(const Interpreter&) = delete;

    std::string render(const Body& body);

    // For the built-in filters, tests and functions.
    Value call(const Value& callee, CallArgs& args);
    Value apply_filter(const std::string& name, const Value& input, CallArgs& args);
    bool apply_test(const std::string& name, const Value& value, CallArgs& args);
    Value attribute(const Value& object, const std::string& name);
    Value item(const Value& object, const Value& key);
    // Counts work done and memory created against the limits (throws Error when over).
    void step();
    void charge(std::size_t bytes);

  private:
    enum class Flow { kNormal, kBreak, kContinue };

    Flow exec_body(const Body& body);
    Flow exec(const Stmt& stmt);
    void exec_for(const Stmt& stmt);
    void exec_set(const Stmt& stmt);
    Value make_macro(const Stmt& stmt, const std::vector<MacroParam>& params, const Body& body,
                     std::string name);
    std::string render_to_string(const Body& body);
    void emit(std::string_view text);

    Value eval(const Expr& expr);
    Value eval_binary(const Expr& expr);
    Value eval_compare(const Expr& expr);
    CallArgs eval_args(const Expr& expr);
    Value lookup(const std::string& name) const;

    const RenderLimits& limits_;
    std::shared_ptr<Scope> scope_;
    std::string* out_ = nullptr;
    const Value* filter_block_input_ = nullptr;
    std::uint64_t steps_ = 0;
    std::size_t allocated_ = 0;
    int call_depth_ = 0;
    // Scopes that macros (and callers) hold on to: a macro stored in the scope it captures is a
    // reference cycle, broken by clearing these when the render ends.
    std::vector<std::shared_ptr<Scope>> captured_scopes_;
};

// Raises "chat template: <reason>" when `value` is undefined (a use Jinja2's Undefined refuses).
void require_defined(const Value& value);

}  // namespace llmserve::chat
