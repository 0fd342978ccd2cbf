// The parsed template: expressions and statements, immutable once parsed (shared by every render).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/lexer.h"
#include "chat/value.h"

namespace llmserve::chat {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
    enum class Kind {
        kLiteral,   // literal
        kName,      // name
        kList,      // items
        kTuple,     // items (evaluates to a list)
        kDict,      // items: key, value, key, value, ...
        kAttr,      // a.name
        kItem,      // a[b]
        kSlice,     // a[items[0]:items[1]:items[2]], absent parts null
        kCall,      // a(items, keywords)
        kFilter,    // a | name(items, keywords); a null in a {% filter %} block's chain head
        kTest,      // a is [not] name(items)
        kUnary,     // name ('-', '+', 'not') a
        kBinary,    // a name b, name an arithmetic operator or '~'
        kAnd,       // a and b
        kOr,        // a or b
        kCompare,   // a ops[0] items[0] ops[1] items[1] ... (chained as in Python)
        kCondition  // b if a else c (c may be null: undefined)
    };
    Kind kind;
    SourcePos pos;
    std::string name;
    Value literal;
    ExprPtr a, b, c;
    std::vector<ExprPtr> items;
    std::vector<std::pair<std::string, ExprPtr>> keywords;
    std::vector<std::string> ops;
    bool negated = false;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct MacroParam {
    std::string name;
    ExprPtr default_value;  // null: required
};

struct Stmt {
    enum class Kind {
        kText,         // text
        kOutput,       // {{ expr }}
        kIf,           // conditions[i] -> bodies[i]; else_body
        kFor,          // for targets in expr [if condition]: body; else_body
        kSet,          // targets (or target_object.name) = expr; or block set: body [| filter]
        kMacro,        // name(params): body
        kCallBlock,    // {% call(params) expr %} body: `caller` is the body as a macro
        kFilterBlock,  // {% filter expr %} body
        kBreak,
        kContinue,
    };
    Kind kind;
    SourcePos pos;
    std::string text;
    std::string name;
    std::vector<std::string> targets;
    std::string target_object;  // set ns.attr: "ns"
    ExprPtr expr;
    ExprPtr condition;
    std::vector<ExprPtr> conditions;
    std::vector<Body> bodies;
    Body body;
    Body else_body;
    std::vector<MacroParam> params;
    bool block_set = false;  // {% set x %}...{% endset %}: expr is the optional filter chain
};

}  // namespace llmserve::chat
