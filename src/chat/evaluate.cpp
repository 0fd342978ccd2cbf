// Expression evaluation of the Interpreter.
#include <fmt/format.h>

#include <optional>

#include "chat/builtins.h"
#include "chat/interpreter.h"
#include "common/error.h"

namespace llmserve::chat {
namespace {

// Python's slice.indices(): the positions a[start:stop:step] visits.
std::vector<std::size_t> slice_positions(std::int64_t size, std::optional<std::int64_t> start,
                                         std::optional<std::int64_t> stop,
                                         std::optional<std::int64_t> step_value) {
    const std::int64_t step = step_value.value_or(1);
    if (step == 0) fail(ErrorCode::kInvalidArgument, "chat template: slice step cannot be zero");
    const auto clamp = [&](std::optional<std::int64_t> value, std::int64_t fallback) {
        if (!value) return fallback;
        std::int64_t v = *value;
        if (v < 0) v += size;
        if (step > 0) return std::clamp<std::int64_t>(v, 0, size);
        return std::clamp<std::int64_t>(v, -1, size - 1);
    };
    const std::int64_t from = clamp(start, step > 0 ? 0 : size - 1);
    const std::int64_t to = clamp(stop, step > 0 ? size : -1);
    std::vector<std::size_t> positions;
    for (std::int64_t i = from; step > 0 ? i < to : i > to; i += step)
        positions.push_back(static_cast<std::size_t>(i));
    return positions;
}

std::optional<std::int64_t> slice_bound(const Value& value) {
    if (value.is_none() || value.is_undefined()) return std::nullopt;
    if (value.is_int() || value.is_bool()) return value.to_int();
    fail(ErrorCode::kInvalidArgument,
         "chat template: slice indices must be integers or None, not {}", value.type_name());
}

}  // namespace

CallArgs Interpreter::eval_args(const Expr& expr) {
    CallArgs args;
    args.positional.reserve(expr.items.size());
    for (const ExprPtr& item : expr.items) args.positional.push_back(eval(*item));
    for (const auto& [name, value] : expr.keywords) args.keywords.emplace_back(name, eval(*value));
    return args;
}

Value Interpreter::eval(const Expr& expr) {
    step();
    switch (expr.kind) {
        case Expr::Kind::kLiteral:
            return expr.literal;
        case Expr::Kind::kName:
            return lookup(expr.name);
        case Expr::Kind::kList:
        case Expr::Kind::kTuple: {
            List list;
            list.reserve(expr.items.size());
            for (const ExprPtr& item : expr.items) list.push_back(eval(*item));
            charge(list.size() * sizeof(Value));
            if (expr.kind == Expr::Kind::kTuple) return Value::tuple(std::move(list));
            return list;
        }
        case Expr::Kind::kDict: {
            Dict dict;
            for (std::size_t i = 0; i + 1 < expr.items.size(); i += 2) {
                Value key = eval(*expr.items[i]);
                if (key.is_list() || key.is_dict() || key.is_namespace() || key.is_undefined())
                    fail(ErrorCode::kInvalidArgument, "chat template: unhashable type: '{}'",
                         key.type_name());
                dict.set(std::move(key), eval(*expr.items[i + 1]));
            }
            charge(dict.items.size() * 2 * sizeof(Value));
            return dict;
        }
        case Expr::Kind::kAttr:
            return attribute(eval(*expr.a), expr.name);
        case Expr::Kind::kItem: {
            const Value object = eval(*expr.a);
            return item(object, eval(*expr.b));
        }
        case Expr::Kind::kSlice: {
            const Value object = eval(*expr.a);
            require_defined(object);
            std::optional<std::int64_t> bounds[3];
            for (int i = 0; i < 3; ++i)
                if (expr.items[i]) bounds[i] = slice_bound(eval(*expr.items[i]));
            if (object.is_list()) {
                const List& list = object.as_list();
                List out;
                for (const std::size_t i : slice_positions(static_cast<std::int64_t>(list.size()),
                                                           bounds[0], bounds[1], bounds[2]))
                    out.push_back(list[i]);
                charge(out.size() * sizeof(Value));
                return out;
            }
            if (object.is_string()) {
                const auto chars = code_points(object.as_string());
                std::string out;
                for (const std::size_t i : slice_positions(static_cast<std::int64_t>(chars.size()),
                                                           bounds[0], bounds[1], bounds[2]))
                    out += chars[i];
                charge(out.size());
                return out;
            }
            fail(ErrorCode::kInvalidArgument, "chat template: '{}' object is not subscriptable",
                 object.type_name());
        }
        case Expr::Kind::kCall: {
            const Value callee = eval(*expr.a);
            CallArgs args = eval_args(expr);
            return call(callee, args);
        }
        case Expr::Kind::kFilter: {
            const Value input = expr.a ? eval(*expr.a) : *filter_block_input_;
            CallArgs args = eval_args(expr);
            return apply_filter(expr.name, input, args);
        }
        case Expr::Kind::kTest: {
            const Value value = expr.a ? eval(*expr.a) : Value();
            CallArgs args = eval_args(expr);
            return apply_test(expr.name, value, args) != expr.negated;
        }
        case Expr::Kind::kUnary: {
            const Value value = eval(*expr.a);
            if (expr.name == "not") return !truthy(value);
            require_defined(value);
            if (!value.is_number())
                fail(ErrorCode::kInvalidArgument,
                     "chat template: bad operand type for unary {}: '{}'", expr.name,
                     value.type_name());
            if (expr.name == "+") return value.is_bool() ? Value(value.to_int()) : value;
            if (value.is_float()) return -value.as_float();
            if (value.to_int() == INT64_MIN)
                fail(ErrorCode::kInvalidArgument, "chat template: integer overflow");
            return -value.to_int();
        }
        case Expr::Kind::kBinary: {
            const Value left = eval(*expr.a);
            const Value right = eval(*expr.b);
            return binary_operation(*this, expr.name, left, right);
        }
        case Expr::Kind::kAnd: {
            Value left = eval(*expr.a);
            return truthy(left) ? eval(*expr.b) : left;
        }
        case Expr::Kind::kOr: {
            Value left = eval(*expr.a);
            return truthy(left) ? left : eval(*expr.b);
        }
        case Expr::Kind::kCompare:
            return eval_compare(expr);
        case Expr::Kind::kCondition:
            if (truthy(eval(*expr.a))) return eval(*expr.b);
            if (expr.c) return eval(*expr.c);
            return Undefined{"the inline if expression has no else branch"};
    }
    return Value();
}

Value Interpreter::eval_compare(const Expr& expr) {
    Value left = eval(*expr.a);
    for (std::size_t i = 0; i < expr.ops.size(); ++i) {
        Value right = eval(*expr.items[i]);
        const std::string& op = expr.ops[i];
        bool result = false;
        if (op == "==") {
            result = equal(left, right);
        } else if (op == "!=") {
            result = !equal(left, right);
        } else if (op == "in" || op == "not in") {
            result = contains(right, left) == (op == "in");
        } else {
            require_defined(left);
            require_defined(right);
            if (op == "<") result = less(left, right);
            if (op == ">") result = less(right, left);
            if (op == "<=") result = !less(right, left);
            if (op == ">=") result = !less(left, right);
        }
        if (!result) return false;
        left = std::move(right);
    }
    return true;
}

}  // namespace llmserve::chat
