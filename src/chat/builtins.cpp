// Jinja2's tests (`x is defined`) and the globals transformers gives templates.
#include "chat/builtins.h"

#include <fmt/format.h>

#include <ctime>
#include <unordered_map>

#include "chat/text.h"
#include "common/error.h"

namespace llmserve::chat {
namespace {

// Jinja2's sandbox refuses larger ranges (MAX_RANGE).
constexpr std::int64_t kMaxRange = 100000;

using Test = bool (*)(Interpreter&, const Value&, CallArgs&);

const Value& first_arg(const CallArgs& args, std::string_view test) {
    if (args.positional.empty() && args.keywords.empty())
        fail(ErrorCode::kInvalidArgument, "chat template: test '{}' needs an argument", test);
    return args.positional.empty() ? args.keywords[0].second : args.positional[0];
}

bool integer_test(const Value& v, std::string_view test) {
    if (!v.is_int())
        fail(ErrorCode::kInvalidArgument, "chat template: test '{}' expects an integer, got {}",
             test, v.type_name());
    return true;
}

bool compare_test(const Value& v, CallArgs& a, std::string_view op) {
    const Value& other = first_arg(a, op);
    if (op == "==") return equal(v, other);
    if (op == "!=") return !equal(v, other);
    require_defined(v);
    require_defined(other);
    if (op == "<") return less(v, other);
    if (op == "<=") return !less(other, v);
    if (op == ">") return less(other, v);
    return !less(v, other);
}

const std::unordered_map<std::string, Test>& tests() {
    static const std::unordered_map<std::string, Test> kTests = {
        {"defined", [](Interpreter&, const Value& v, CallArgs&) { return !v.is_undefined(); }},
        {"undefined", [](Interpreter&, const Value& v, CallArgs&) { return v.is_undefined(); }},
        {"none", [](Interpreter&, const Value& v, CallArgs&) { return v.is_none(); }},
        {"string", [](Interpreter&, const Value& v, CallArgs&) { return v.is_string(); }},
        {"number", [](Interpreter&, const Value& v, CallArgs&) { return v.is_number(); }},
        {"integer", [](Interpreter&, const Value& v, CallArgs&) { return v.is_int(); }},
        {"float", [](Interpreter&, const Value& v, CallArgs&) { return v.is_float(); }},
        {"boolean", [](Interpreter&, const Value& v, CallArgs&) { return v.is_bool(); }},
        {"true",
         [](Interpreter&, const Value& v, CallArgs&) { return v.is_bool() && v.as_bool(); }},
        {"false",
         [](Interpreter&, const Value& v, CallArgs&) { return v.is_bool() && !v.as_bool(); }},
        {"mapping", [](Interpreter&, const Value& v, CallArgs&) { return v.is_dict(); }},
        {"callable", [](Interpreter&, const Value& v, CallArgs&) { return v.is_callable(); }},
        // Jinja2's Undefined is iterable and has a length, as strings, lists and dicts.
        {"iterable",
         [](Interpreter&, const Value& v, CallArgs&) {
             return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
         }},
        {"sequence",
         [](Interpreter&, const Value& v, CallArgs&) {
             return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
         }},
        {"odd", [](Interpreter&, const Value& v,
                   CallArgs&) { return integer_test(v, "odd") && v.as_int() % 2 != 0; }},
        {"even", [](Interpreter&, const Value& v,
                    CallArgs&) { return integer_test(v, "even") && v.as_int() % 2 == 0; }},
        {"divisibleby",
         [](Interpreter&, const Value& v, CallArgs& a) {
             const Value& d = first_arg(a, "divisibleby");
             integer_test(v, "divisibleby");
             integer_test(d, "divisibleby");
             if (d.as_int() == 0) fail(ErrorCode::kInvalidArgument, "chat template: divisibleby 0");
             return d.as_int() == -1 || v.as_int() % d.as_int() == 0;
         }},
        {"lower",
         [](Interpreter&, const Value& v, CallArgs&) {
             return v.is_string() && text::lower(v.as_string()) == v.as_string();
         }},
        {"upper",
         [](Interpreter&, const Value& v, CallArgs&) {
             return v.is_string() && text::upper(v.as_string()) == v.as_string();
         }},
        {"in",
         [](Interpreter&, const Value& v, CallArgs& a) { return contains(first_arg(a, "in"), v); }},
        {"sameas",
         [](Interpreter&, const Value& v, CallArgs& a) {
             const Value& other = first_arg(a, "sameas");
             if (v.is_list() && other.is_list()) return v.list_ptr() == other.list_ptr();
             if (v.is_dict() || v.is_list() || other.is_dict() || other.is_list()) return false;
             return v.type_name() == other.type_name() && equal(v, other);
         }},
        {"equalto",
         [](Interpreter&, const Value& v, CallArgs& a) { return compare_test(v, a, "=="); }},
        {"eq", [](Interpreter&, const Value& v, CallArgs& a) { return compare_test(v, a, "=="); }},
        {"==", [](Interpreter&, const Value& v, CallArgs& a) { return compare_test(v, a, "=="); }},
        {"ne", [](Interpreter&, const Value& v, CallArgs& a) { return compare_test(v, a, "!="); }},
        {"!=", [](Interpreter&, const Value& v, CallArgs& a) { return compare_test(v, a, "!="); }},
        {"lt", [](Interpreter&, const Value& v, CallArgs& a) { return compare_test(v, a, "<"); }},
        {"lessthan",
         [](Interpreter&, const Value& v, CallArgs& a) { return compare_test(v, a, "<"); }},
        {"le", [](Interpreter&, const Value& v, CallArgs& a) { return compare_test(v, a, "<="); }},
        {"gt", [](Interpreter&, const Value& v, CallArgs& a) { return compare_test(v, a, ">"); }},
        {"greaterthan",
         [](Interpreter&, const Value& v, CallArgs& a) { return compare_test(v, a, ">"); }},
        {"ge", [](Interpreter&, const Value& v, CallArgs& a) { return compare_test(v, a, ">="); }},
    };
    return kTests;
}

Value range_of(Interpreter& interp, CallArgs& args) {
    std::vector<std::int64_t> bounds;
    for (const Value& v : args.positional) {
        if (!v.is_int() && !v.is_bool())
            fail(ErrorCode::kInvalidArgument, "chat template: range() takes integers, not {}",
                 v.type_name());
        bounds.push_back(v.to_int());
    }
    if (bounds.empty() || bounds.size() > 3)
        fail(ErrorCode::kInvalidArgument, "chat template: range() takes 1 to 3 arguments");
    const std::int64_t start = bounds.size() == 1 ? 0 : bounds[0];
    const std::int64_t stop = bounds.size() == 1 ? bounds[0] : bounds[1];
    const std::int64_t step = bounds.size() == 3 ? bounds[2] : 1;
    if (step == 0)
        fail(ErrorCode::kInvalidArgument, "chat template: range() arg 3 must not be zero");
    // Count without overflow: the span is at most 2^64, held in a double for the comparison.
    const double span = step > 0 ? static_cast<double>(stop) - static_cast<double>(start)
                                 : static_cast<double>(start) - static_cast<double>(stop);
    const double count = span <= 0 ? 0 : std::ceil(span / std::fabs(static_cast<double>(step)));
    if (count > static_cast<double>(kMaxRange))
        fail(ErrorCode::kInvalidArgument,
             "chat template: range too big: the sandbox allows at most {} items", kMaxRange);
    interp.charge(static_cast<std::size_t>(count) * sizeof(Value));
    List out;
    std::int64_t value = start;
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(count); ++i, value += step)
        out.emplace_back(value);
    return out;
}

Dict dict_of(CallArgs& args) {
    Dict dict;
    for (const Value& positional : args.positional) {
        if (!positional.is_dict())
            fail(ErrorCode::kInvalidArgument,
                 "chat template: dict() and namespace() take a dict or keywords, not {}",
                 positional.type_name());
        for (const auto& [key, value] : positional.as_dict().items) dict.set(key, value);
    }
    for (auto& [key, value] : args.keywords) dict.set(Value(key), value);
    return dict;
}

}  // namespace

bool builtin_test(Interpreter& interp, const std::string& name, const Value& value,
                  CallArgs& args) {
    const auto& table = tests();
    const auto it = table.find(name);
    if (it == table.end())
        fail(ErrorCode::kInvalidArgument, "chat template: no test named '{}'", name);
    return it->second(interp, value, args);
}

std::shared_ptr<Scope> make_global_scope() {
    auto scope = std::make_shared<Scope>();
    auto& globals = scope->variables;
    globals["range"] = make_callable("range", range_of);
    globals["dict"] =
        make_callable("dict", [](Interpreter&, CallArgs& args) { return Value(dict_of(args)); });
    globals["namespace"] = make_callable("namespace", [](Interpreter&, CallArgs& args) {
        auto ns = std::make_shared<Namespace>();
        ns->attributes = dict_of(args);
        return Value(std::move(ns));
    });
    globals["raise_exception"] =
        make_callable("raise_exception", [](Interpreter&, CallArgs& args) -> Value {
            throw Error(ErrorCode::kInvalidArgument,
                        "chat template: " + to_str(argument(args, 0, "message")));
        });
    globals["strftime_now"] = make_callable("strftime_now", [](Interpreter&, CallArgs& args) {
        const std::string format = to_str(argument(args, 0, "format"));
        const std::time_t now = std::time(nullptr);
        std::tm local{};
        localtime_r(&now, &local);
        char buffer[256];
        const std::size_t length =
            format.empty() || format.size() > 64
                ? 0
                : std::strftime(buffer, sizeof buffer, format.c_str(), &local);
        return Value(std::string(buffer, length));
    });
    return scope;
}

}  // namespace llmserve::chat
