// Jinja2's built-in filters, with transformers' `tojson` (json.dumps, ensure_ascii=False).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "chat/builtins.h"
#include "chat/text.h"
#include "common/error.h"

namespace llmserve::chat {
namespace {

using Filter = Value (*)(Interpreter&, const Value&, CallArgs&);

[[noreturn]] void type_error(std::string_view filter, const Value& value, std::string_view want) {
    fail(ErrorCode::kInvalidArgument, "chat template: filter '{}' expects {}, got {}", filter, want,
         value.type_name());
}

// A sequence a filter walks: list items, dict keys, string characters, nothing for undefined.
List items_of(const Value& value, std::string_view filter) {
    if (value.is_list()) return value.as_list();
    if (value.is_undefined()) return {};
    if (value.is_dict()) {
        List keys;
        for (const auto& item : value.as_dict().items) keys.push_back(item.first);
        return keys;
    }
    if (value.is_string()) {
        List chars;
        for (const std::string_view cp : code_points(value.as_string()))
            chars.emplace_back(std::string(cp));
        return chars;
    }
    type_error(filter, value, "an iterable");
}

// Jinja's attribute paths: "a.b.0".
Value attribute_path(Interpreter& interp, const Value& object, const Value& path) {
    if (path.is_int()) return interp.item(object, path);
    Value current = object;
    for (const std::string& part : text::split(to_str(path), std::string("."), -1)) {
        if (!part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
            current = interp.item(current, Value(static_cast<std::int64_t>(std::stoll(part))));
        } else {
            current = interp.item(current, Value(part));
        }
        if (current.is_undefined()) break;
    }
    return current;
}

// Sort/unique key: lower-cased strings unless case_sensitive.
Value sort_key(const Value& value, bool case_sensitive) {
    if (!case_sensitive && value.is_string()) return text::lower(value.as_string());
    return value;
}

std::string json_of(Interpreter& interp, const Value& value, CallArgs& args) {
    JsonStyle style;
    const Value indent = argument(args, 0, "indent");
    if (indent.is_int())
        style.indent = static_cast<int>(std::clamp<std::int64_t>(indent.as_int(), 0, 64));
    if (indent.is_string())
        fail(ErrorCode::kInvalidArgument, "chat template: tojson: indent must be an integer");
    const Value separators = argument(args, 99, "separators");
    if (separators.is_list() && separators.as_list().size() == 2) {
        style.item_separator = to_str(separators.as_list()[0]);
        style.key_separator = to_str(separators.as_list()[1]);
    } else if (style.indent >= 0) {
        style.item_separator = std::string(1, ',');  // json.dumps with indent: no space
    }
    style.sort_keys = truthy(argument(args, 99, "sort_keys"));
    style.ensure_ascii = truthy(argument(args, 99, "ensure_ascii"));
    std::string out = to_json(value, style);
    interp.charge(out.size());
    return out;
}

Value f_length(Interpreter&, const Value& v, CallArgs&) {
    if (v.is_string()) return static_cast<std::int64_t>(code_point_count(v.as_string()));
    if (v.is_list()) return static_cast<std::int64_t>(v.as_list().size());
    if (v.is_dict()) return static_cast<std::int64_t>(v.as_dict().items.size());
    if (v.is_undefined()) return std::int64_t{0};
    fail(ErrorCode::kInvalidArgument, "chat template: object of type '{}' has no len()",
         v.type_name());
}

Value f_first_last(Interpreter&, const Value& v, CallArgs& args, bool first) {
    (void)args;
    const List items = items_of(v, first ? "first" : "last");
    if (items.empty()) return Undefined{"no first or last item of an empty sequence"};
    return first ? items.front() : items.back();
}

Value f_join(Interpreter& interp, const Value& v, CallArgs& args) {
    const std::string separator = to_str(argument(args, 0, "d", Value("")));
    const Value attribute = argument(args, 1, "attribute");
    std::string out;
    bool first = true;
    for (const Value& item : items_of(v, "join")) {
        if (!first) out += separator;
        first = false;
        out += to_str(attribute.is_undefined() ? item : attribute_path(interp, item, attribute));
    }
    interp.charge(out.size());
    return out;
}

Value f_default(Interpreter&, const Value& v, CallArgs& args) {
    const bool boolean = truthy(argument(args, 1, "boolean"));
    if (v.is_undefined() || (boolean && !truthy(v)))
        return argument(args, 0, "default_value", Value(""));
    return v;
}

Value f_map(Interpreter& interp, const Value& v, CallArgs& args) {
    List out;
    const Value attribute = argument(args, 99, "attribute");
    if (!attribute.is_undefined()) {
        const Value fallback = argument(args, 99, "default");
        for (const Value& item : items_of(v, "map")) {
            Value mapped = attribute_path(interp, item, attribute);
            out.push_back(mapped.is_undefined() && !fallback.is_undefined() ? fallback : mapped);
        }
    } else {
        if (args.positional.empty())
            fail(ErrorCode::kInvalidArgument,
                 "chat template: map needs a filter name or attribute=");
        const std::string filter = to_str(args.positional[0]);
        CallArgs rest{{args.positional.begin() + 1, args.positional.end()}, args.keywords};
        for (const Value& item : items_of(v, "map"))
            out.push_back(interp.apply_filter(filter, item, rest));
    }
    interp.charge(out.size() * sizeof(Value));
    return out;
}

// select / reject / selectattr / rejectattr.
Value select(Interpreter& interp, const Value& v, CallArgs& args, bool by_attribute, bool keep) {
    std::size_t next = 0;
    Value attribute;
    if (by_attribute) {
        if (args.positional.empty())
            fail(ErrorCode::kInvalidArgument,
                 "chat template: selectattr/rejectattr need an attribute");
        attribute = args.positional[next++];
    }
    std::string test;
    if (next < args.positional.size()) test = to_str(args.positional[next++]);
    CallArgs test_args{
        {args.positional.begin() + static_cast<std::ptrdiff_t>(next), args.positional.end()},
        args.keywords};
    List out;
    for (const Value& item : items_of(v, "select")) {
        const Value subject = by_attribute ? attribute_path(interp, item, attribute) : item;
        const bool passed =
            test.empty() ? truthy(subject) : interp.apply_test(test, subject, test_args);
        if (passed == keep) out.push_back(item);
    }
    return out;
}

Value f_unique(Interpreter& interp, const Value& v, CallArgs& args) {
    const bool case_sensitive = truthy(argument(args, 0, "case_sensitive"));
    const Value attribute = argument(args, 1, "attribute");
    List out;
    List seen;
    for (const Value& item : items_of(v, "unique")) {
        const Value key =
            sort_key(attribute.is_undefined() ? item : attribute_path(interp, item, attribute),
                     case_sensitive);
        if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equal(s, key); }))
            continue;
        interp.step();
        seen.push_back(key);
        out.push_back(item);
    }
    return out;
}

Value f_sort(Interpreter& interp, const Value& v, CallArgs& args) {
    const bool reverse = truthy(argument(args, 0, "reverse"));
    const bool case_sensitive = truthy(argument(args, 1, "case_sensitive"));
    const Value attribute = argument(args, 2, "attribute");
    List items = items_of(v, "sort");
    std::vector<std::pair<Value, std::size_t>> keyed;
    for (std::size_t i = 0; i < items.size(); ++i)
        keyed.emplace_back(
            sort_key(
                attribute.is_undefined() ? items[i] : attribute_path(interp, items[i], attribute),
                case_sensitive),
            i);
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
        return reverse ? less(b.first, a.first) : less(a.first, b.first);
    });
    List out;
    for (const auto& [key, index] : keyed) out.push_back(items[index]);
    return out;
}

Value f_dictsort(Interpreter&, const Value& v, CallArgs& args) {
    if (!v.is_dict()) type_error("dictsort", v, "a dict");
    const bool case_sensitive = truthy(argument(args, 0, "case_sensitive"));
    const bool by_value = to_str(argument(args, 1, "by", Value("key"))) == "value";
    const bool reverse = truthy(argument(args, 2, "reverse"));
    std::vector<std::pair<Value, Value>> items = v.as_dict().items;
    std::stable_sort(items.begin(), items.end(), [&](const auto& a, const auto& b) {
        const Value x = sort_key(by_value ? a.second : a.first, case_sensitive);
        const Value y = sort_key(by_value ? b.second : b.first, case_sensitive);
        return reverse ? less(y, x) : less(x, y);
    });
    List out;
    for (auto& [key, value] : items) out.push_back(Value::tuple({key, value}));
    return out;
}

Value f_int(Interpreter&, const Value& v, CallArgs& args) {
    const Value fallback = argument(args, 0, "default", Value(0));
    if (v.is_int() || v.is_bool()) return v.to_int();
    if (v.is_float()) {
        if (!std::isfinite(v.as_float()) || std::fabs(v.as_float()) >= 9.2e18) return fallback;
        return static_cast<std::int64_t>(v.as_float());
    }
    if (v.is_string()) {
        const std::string s = text::strip(v.as_string(), std::nullopt, true, true);
        std::string digits;
        for (const char c : s)
            if (c != '_') digits += c;
        std::size_t used = 0;
        try {
            const long long parsed = std::stoll(digits, &used, 10);
            if (used == digits.size()) return static_cast<std::int64_t>(parsed);
        } catch (const std::exception&) {
        }
        try {
            const double parsed = std::stod(s, &used);
            if (used == s.size() && std::isfinite(parsed) && std::fabs(parsed) < 9.2e18)
                return static_cast<std::int64_t>(parsed);
        } catch (const std::exception&) {
        }
    }
    return fallback;
}

Value f_float(Interpreter&, const Value& v, CallArgs& args) {
    const Value fallback = argument(args, 0, "default", Value(0.0));
    if (v.is_number()) return v.to_double();
    if (v.is_string()) {
        const std::string s = text::strip(v.as_string(), std::nullopt, true, true);
        std::size_t used = 0;
        try {
            const double parsed = std::stod(s, &used);
            if (used == s.size() && !s.empty()) return parsed;
        } catch (const std::exception&) {
        }
    }
    return fallback;
}

Value f_round(Interpreter&, const Value& v, CallArgs& args) {
    if (!v.is_number()) type_error("round", v, "a number");
    const Value precision_arg = argument(args, 0, "precision", Value(0));
    const auto precision = static_cast<int>(
        std::clamp<std::int64_t>(precision_arg.is_int() ? precision_arg.as_int() : 0, -20, 20));
    const std::string method = to_str(argument(args, 1, "method", Value("common")));
    const double scale = std::pow(10.0, precision);
    const double x = v.to_double() * scale;
    double rounded = 0;
    if (method == "common") {
        rounded = std::nearbyint(x);  // Python's round(): ties to even
    } else if (method == "ceil") {
        rounded = std::ceil(x);
    } else if (method == "floor") {
        rounded = std::floor(x);
    } else {
        fail(ErrorCode::kInvalidArgument,
             "chat template: round: method must be common, ceil or floor");
    }
    return rounded / scale;
}

Value f_indent(Interpreter& interp, const Value& v, CallArgs& args) {
    const Value width = argument(args, 0, "width", Value(4));
    const std::string indentation =
        width.is_string() ? width.as_string()
                          : std::string(static_cast<std::size_t>(std::clamp<std::int64_t>(
                                            width.is_int() ? width.as_int() : 4, 0, 256)),
                                        ' ');
    const bool first = truthy(argument(args, 1, "first"));
    const bool blank = truthy(argument(args, 2, "blank"));
    std::vector<std::string> lines = text::splitlines(to_str(v) + "\n");
    std::string out;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        if (i > 0) {
            out += '\n';
            if (blank || !lines[i].empty()) out += indentation;
        }
        out += lines[i];
    }
    if (first) out = indentation + out;
    interp.charge(out.size());
    return out;
}

Value f_batch(Interpreter& interp, const Value& v, CallArgs& args) {
    const Value count = argument(args, 0, "linecount");
    if (!count.is_int() || count.as_int() <= 0)
        fail(ErrorCode::kInvalidArgument, "chat template: batch needs a positive count");
    const Value fill = argument(args, 1, "fill_with");
    List out;
    List current;
    for (const Value& item : items_of(v, "batch")) {
        current.push_back(item);
        if (static_cast<std::int64_t>(current.size()) == count.as_int()) {
            out.emplace_back(std::move(current));
            current.clear();
        }
    }
    if (!current.empty()) {
        if (!fill.is_undefined())
            while (static_cast<std::int64_t>(current.size()) < count.as_int())
                current.push_back(fill);
        out.emplace_back(std::move(current));
    }
    interp.charge(out.size() * sizeof(Value));
    return out;
}

Value f_min_max(Interpreter& interp, const Value& v, CallArgs& args, bool want_max) {
    const bool case_sensitive = truthy(argument(args, 0, "case_sensitive"));
    const Value attribute = argument(args, 1, "attribute");
    const List items = items_of(v, want_max ? "max" : "min");
    if (items.empty()) return Undefined{"no min or max of an empty sequence"};
    std::size_t best = 0;
    const auto key = [&](std::size_t i) {
        return sort_key(
            attribute.is_undefined() ? items[i] : attribute_path(interp, items[i], attribute),
            case_sensitive);
    };
    for (std::size_t i = 1; i < items.size(); ++i)
        if (want_max ? less(key(best), key(i)) : less(key(i), key(best))) best = i;
    return items[best];
}

Value f_sum(Interpreter& interp, const Value& v, CallArgs& args) {
    const Value attribute = argument(args, 0, "attribute");
    Value total = argument(args, 1, "start", Value(0));
    for (const Value& item : items_of(v, "sum"))
        total = binary_operation(
            interp, "+", total,
            attribute.is_undefined() ? item : attribute_path(interp, item, attribute));
    return total;
}

Value f_wordcount(Interpreter&, const Value& v, CallArgs&) {
    std::int64_t words = 0;
    bool in_word = false;
    const std::string text_value = to_str(v);
    for (const std::string_view cp : code_points(text_value)) {
        const bool word_char =
            cp.size() > 1 ? !text::is_space(cp)
                          : (std::isalnum(static_cast<unsigned char>(cp[0])) || cp[0] == '_');
        if (word_char && !in_word) ++words;
        in_word = word_char;
    }
    return words;
}

Value string_filter(const Value& v, std::string (*fn)(std::string_view)) {
    return fn(to_str(v));
}

const std::unordered_map<std::string, Filter>& filters() {
    static const std::unordered_map<std::string, Filter> kFilters = {
        {"length", f_length},
        {"count", f_length},
        {"first",
         [](Interpreter& i, const Value& v, CallArgs& a) { return f_first_last(i, v, a, true); }},
        {"last",
         [](Interpreter& i, const Value& v, CallArgs& a) { return f_first_last(i, v, a, false); }},
        {"join", f_join},
        {"default", f_default},
        {"d", f_default},
        {"map", f_map},
        {"select",
         [](Interpreter& i, const Value& v, CallArgs& a) { return select(i, v, a, false, true); }},
        {"reject",
         [](Interpreter& i, const Value& v, CallArgs& a) { return select(i, v, a, false, false); }},
        {"selectattr",
         [](Interpreter& i, const Value& v, CallArgs& a) { return select(i, v, a, true, true); }},
        {"rejectattr",
         [](Interpreter& i, const Value& v, CallArgs& a) { return select(i, v, a, true, false); }},
        {"unique", f_unique},
        {"sort", f_sort},
        {"dictsort", f_dictsort},
        {"int", f_int},
        {"float", f_float},
        {"round", f_round},
        {"indent", f_indent},
        {"batch", f_batch},
        {"min",
         [](Interpreter& i, const Value& v, CallArgs& a) { return f_min_max(i, v, a, false); }},
        {"max",
         [](Interpreter& i, const Value& v, CallArgs& a) { return f_min_max(i, v, a, true); }},
        {"sum", f_sum},
        {"wordcount", f_wordcount},
        {"tojson",
         [](Interpreter& i, const Value& v, CallArgs& a) { return Value(json_of(i, v, a)); }},
        {"upper",
         [](Interpreter&, const Value& v, CallArgs&) { return string_filter(v, text::upper); }},
        {"lower",
         [](Interpreter&, const Value& v, CallArgs&) { return string_filter(v, text::lower); }},
        {"title", [](Interpreter&, const Value& v,
                     CallArgs&) { return string_filter(v, text::jinja_title); }},
        {"capitalize", [](Interpreter&, const Value& v,
                          CallArgs&) { return string_filter(v, text::capitalize); }},
        {"escape", [](Interpreter&, const Value& v,
                      CallArgs&) { return string_filter(v, text::html_escape); }},
        {"e", [](Interpreter&, const Value& v,
                 CallArgs&) { return string_filter(v, text::html_escape); }},
        {"forceescape", [](Interpreter&, const Value& v,
                           CallArgs&) { return string_filter(v, text::html_escape); }},
        {"safe", [](Interpreter&, const Value& v, CallArgs&) { return v; }},
        {"string", [](Interpreter&, const Value& v, CallArgs&) { return Value(to_str(v)); }},
        {"trim",
         [](Interpreter&, const Value& v, CallArgs& a) {
             const Value chars = argument(a, 0, "chars");
             return Value(text::strip(
                 to_str(v), chars.is_string() ? std::optional(chars.as_string()) : std::nullopt,
                 true, true));
         }},
        {"replace",
         [](Interpreter& i, const Value& v, CallArgs& a) {
             const Value count = argument(a, 2, "count");
             std::string out =
                 text::replace(to_str(v), to_str(argument(a, 0, "old")),
                               to_str(argument(a, 1, "new")), count.is_int() ? count.as_int() : -1);
             i.charge(out.size());
             return Value(std::move(out));
         }},
        {"list",
         [](Interpreter&, const Value& v, CallArgs&) { return Value(items_of(v, "list")); }},
        {"reverse",
         [](Interpreter&, const Value& v, CallArgs&) {
             if (v.is_string()) {
                 auto cps = code_points(v.as_string());
                 std::string out;
                 for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
                 return Value(std::move(out));
             }
             List items = items_of(v, "reverse");
             std::reverse(items.begin(), items.end());
             return Value(std::move(items));
         }},
        {"items",
         [](Interpreter&, const Value& v, CallArgs&) {
             if (v.is_undefined()) return Value(List{});
             if (!v.is_dict()) type_error("items", v, "a dict");
             List out;
             for (const auto& [key, value] : v.as_dict().items)
                 out.push_back(Value::tuple({key, value}));
             return Value(std::move(out));
         }},
        {"abs",
         [](Interpreter&, const Value& v, CallArgs&) {
             if (v.is_float()) return Value(std::fabs(v.as_float()));
             if (!v.is_int() && !v.is_bool()) type_error("abs", v, "a number");
             if (v.to_int() == INT64_MIN)
                 fail(ErrorCode::kInvalidArgument, "chat template: integer overflow");
             return Value(v.to_int() < 0 ? -v.to_int() : v.to_int());
         }},
        {"attr", [](Interpreter& i, const Value& v,
                    CallArgs& a) { return i.attribute(v, to_str(argument(a, 0, "name"))); }},
    };
    return kFilters;
}

}  // namespace

Value argument(const CallArgs& args, std::size_t position, std::string_view name, Value fallback) {
    if (position < args.positional.size()) return args.positional[position];
    for (const auto& [key, value] : args.keywords)
        if (key == name) return value;
    return fallback;
}

Value builtin_filter(Interpreter& interp, const std::string& name, const Value& input,
                     CallArgs& args) {
    const auto& table = filters();
    const auto it = table.find(name);
    if (it == table.end())
        fail(ErrorCode::kInvalidArgument, "chat template: no filter named '{}'", name);
    return it->second(interp, input, args);
}

}  // namespace llmserve::chat
