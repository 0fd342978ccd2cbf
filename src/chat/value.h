// The values a chat template computes with, with Python's semantics where a template can observe
// them (printing, equality, ordering, truthiness). Lists and dicts are immutable and shared, as in
// transformers' ImmutableSandboxedEnvironment; only a namespace() can be changed, by `set ns.x`.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace llmserve::chat {

class Value;
class Interpreter;

// Jinja2's default Undefined: prints empty, iterates empty, is false; most other uses raise.
struct Undefined {
    std::string reason;  // why it is undefined, worded as Jinja2 does ("'x' is undefined")
};
struct None {};

using List = std::vector<Value>;
// Insertion-ordered, as Python's dict (and `tojson`) keeps it.
struct Dict {
    std::vector<std::pair<Value, Value>> items;
    const Value* find(const Value& key) const;
    void set(Value key, Value value);
};
struct Namespace {
    Dict attributes;
};

struct CallArgs {
    std::vector<Value> positional;
    std::vector<std::pair<std::string, Value>> keywords;
};
struct Callable {
    std::string name;
    std::function<Value(Interpreter&, CallArgs&)> call;
};

using ListPtr = std::shared_ptr<const List>;
using DictPtr = std::shared_ptr<const Dict>;
using NamespacePtr = std::shared_ptr<Namespace>;
using CallablePtr = std::shared_ptr<const Callable>;

class Value {
  public:
    using Storage = std::variant<Undefined, None, bool, std::int64_t, double, std::string, ListPtr,
                                 DictPtr, NamespacePtr, CallablePtr>;

    Value() : storage_(Undefined{}) {}
    Value(None) : storage_(None{}) {}
    Value(Undefined u) : storage_(std::move(u)) {}
    Value(bool b) : storage_(b) {}
    Value(int i) : storage_(static_cast<std::int64_t>(i)) {}
    Value(std::int64_t i) : storage_(i) {}
    Value(double d) : storage_(d) {}
    Value(std::string s) : storage_(std::move(s)) {}
    Value(const char* s) : storage_(std::string(s)) {}
    Value(List list) : storage_(std::make_shared<const List>(std::move(list))) {}
    Value(ListPtr list) : storage_(std::move(list)) {}
    Value(Dict dict) : storage_(std::make_shared<const Dict>(std::move(dict))) {}
    Value(DictPtr dict) : storage_(std::move(dict)) {}
    Value(NamespacePtr ns) : storage_(std::move(ns)) {}
    Value(CallablePtr fn) : storage_(std::move(fn)) {}

    bool is_undefined() const { return std::holds_alternative<Undefined>(storage_); }
    bool is_none() const { return std::holds_alternative<None>(storage_); }
    bool is_bool() const { return std::holds_alternative<bool>(storage_); }
    bool is_int() const { return std::holds_alternative<std::int64_t>(storage_); }
    bool is_float() const { return std::holds_alternative<double>(storage_); }
    bool is_number() const { return is_int() || is_float() || is_bool(); }
    bool is_string() const { return std::holds_alternative<std::string>(storage_); }
    bool is_list() const { return std::holds_alternative<ListPtr>(storage_); }
    bool is_dict() const { return std::holds_alternative<DictPtr>(storage_); }
    bool is_namespace() const { return std::holds_alternative<NamespacePtr>(storage_); }
    bool is_callable() const { return std::holds_alternative<CallablePtr>(storage_); }

    bool as_bool() const { return std::get<bool>(storage_); }
    std::int64_t as_int() const { return std::get<std::int64_t>(storage_); }
    double as_float() const { return std::get<double>(storage_); }
    const std::string& as_string() const { return std::get<std::string>(storage_); }
    const List& as_list() const { return *std::get<ListPtr>(storage_); }
    const ListPtr& list_ptr() const { return std::get<ListPtr>(storage_); }
    const Dict& as_dict() const { return *std::get<DictPtr>(storage_); }
    const NamespacePtr& as_namespace() const { return std::get<NamespacePtr>(storage_); }
    const Callable& as_callable() const { return *std::get<CallablePtr>(storage_); }
    const Undefined& as_undefined() const { return std::get<Undefined>(storage_); }
    // Python's numbers: bool is an int; call only when is_number().
    double to_double() const;
    // Integer value of an int or bool (call when is_int() || is_bool()).
    std::int64_t to_int() const { return is_bool() ? as_bool() : as_int(); }

    // Python's type name ("str", "list", "dict", "NoneType", ...) for error messages.
    std::string type_name() const;

    // A tuple is a list that prints as Python prints tuples: (1, 2).
    static Value tuple(List items) {
        Value value(std::move(items));
        value.tuple_ = true;
        return value;
    }
    bool is_tuple() const { return tuple_; }

  private:
    Storage storage_;
    bool tuple_ = false;
};

Value make_callable(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn);

bool truthy(const Value& value);
// Python's ==; containers compare element-wise (depth-limited).
bool equal(const Value& a, const Value& b);
// Python's <, for numbers, strings and lists; throws Error for types Python cannot order.
bool less(const Value& a, const Value& b);
// Python's str(): what `{{ value }}` prints (None, True, 1.0, ['a', 1], {'k': 'v'}).
std::string to_str(const Value& value);
// Python's repr() of a value inside a list or dict.
std::string repr(const Value& value);
std::string python_float_repr(double value);

// Request JSON to a template value and back (`tojson`: json.dumps with Python's separators).
// nlohmann::json sorts object keys; ordered_json keeps the request's order, as Python's dict does.
Value from_json(const nlohmann::json& json);
Value from_json(const nlohmann::ordered_json& json);
struct JsonStyle {
    int indent = -1;  // < 0: one line
    std::string item_separator = ", ";
    std::string key_separator = ": ";
    bool sort_keys = false;
    bool ensure_ascii = false;
};
std::string to_json(const Value& value, const JsonStyle& style);

// UTF-8 helpers: code points, as Python's str indexes them.
std::vector<std::string_view> code_points(std::string_view text);
std::size_t code_point_count(std::string_view text);

}  // namespace llmserve::chat
