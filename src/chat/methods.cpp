// The str, dict and list methods a template may call. Methods that would change a list or dict
// raise, as transformers' ImmutableSandboxedEnvironment does.
#include <fmt/format.h>

#include <unordered_set>

#include "chat/builtins.h"
#include "chat/text.h"
#include "common/error.h"

namespace llmserve::chat {
namespace {

using Method = std::function<Value(Interpreter&, CallArgs&)>;

std::optional<std::string> optional_string(const Value& value, std::string_view what) {
    if (value.is_undefined() || value.is_none()) return std::nullopt;
    if (!value.is_string())
        fail(ErrorCode::kInvalidArgument, "chat template: {} must be a string or None, not {}",
             what, value.type_name());
    return value.as_string();
}

std::string string_arg(const Value& value, std::string_view what) {
    if (!value.is_string())
        fail(ErrorCode::kInvalidArgument, "chat template: {} must be a string, not {}", what,
             value.type_name());
    return value.as_string();
}

long long int_arg(const Value& value, long long fallback, std::string_view what) {
    if (value.is_undefined() || value.is_none()) return fallback;
    if (!value.is_int() && !value.is_bool())
        fail(ErrorCode::kInvalidArgument, "chat template: {} must be an integer, not {}", what,
             value.type_name());
    return value.to_int();
}

Value string_list(std::vector<std::string> parts) {
    List list;
    list.reserve(parts.size());
    for (std::string& part : parts) list.emplace_back(std::move(part));
    return list;
}

// Code point index of byte offset `byte` in `s` (str.find answers in characters).
std::int64_t char_index(const std::string& s, std::size_t byte) {
    return static_cast<std::int64_t>(code_point_count(std::string_view(s).substr(0, byte)));
}

bool affix_match(const std::string& s, const Value& affix, bool prefix) {
    const auto one = [&](const Value& candidate) {
        const std::string a =
            string_arg(candidate, prefix ? "startswith's argument" : "endswith's argument");
        return prefix ? s.rfind(a, 0) == 0
                      : s.size() >= a.size() && s.compare(s.size() - a.size(), a.size(), a) == 0;
    };
    if (affix.is_list()) {
        for (const Value& candidate : affix.as_list())
            if (one(candidate)) return true;
        return false;
    }
    return one(affix);
}

// str.format with {} / {0} / {name} fields (format specs other than empty are refused).
std::string format_string(const std::string& format, const CallArgs& args) {
    std::string out;
    std::size_t auto_index = 0;
    for (std::size_t i = 0; i < format.size(); ++i) {
        const char c = format[i];
        if (c == '}' && i + 1 < format.size() && format[i + 1] == '}') {
            out += '}';
            ++i;
            continue;
        }
        if (c != '{') {
            out += c;
            continue;
        }
        if (i + 1 < format.size() && format[i + 1] == '{') {
            out += '{';
            ++i;
            continue;
        }
        const std::size_t close = format.find('}', i);
        if (close == std::string::npos)
            fail(ErrorCode::kInvalidArgument, "chat template: format: unmatched '{{'");
        const std::string field = format.substr(i + 1, close - i - 1);
        i = close;
        if (field.find_first_of(":!.[") != std::string::npos)
            fail(ErrorCode::kInvalidArgument,
                 "chat template: format: field '{}' is not supported (only {{}}, {{0}}, {{name}})",
                 field);
        const Value* value = nullptr;
        if (field.empty() || std::isdigit(static_cast<unsigned char>(field[0]))) {
            const std::size_t index = field.empty() ? auto_index++ : std::stoul(field);
            if (index < args.positional.size()) value = &args.positional[index];
        } else {
            for (const auto& [name, arg] : args.keywords)
                if (name == field) value = &arg;
        }
        if (value == nullptr)
            fail(ErrorCode::kInvalidArgument, "chat template: format: no argument for '{{{}}}'",
                 field);
        out += to_str(*value);
    }
    return out;
}

Value string_method(const std::string& s, const std::string& name, Interpreter& interp,
                    CallArgs& args) {
    const auto arg = [&](std::size_t i, std::string_view key) { return argument(args, i, key); };
    Value result;
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
        result = text::strip(s, optional_string(arg(0, "chars"), "strip's chars"), name != "rstrip",
                             name != "lstrip");
    } else if (name == "upper") {
        result = text::upper(s);
    } else if (name == "lower") {
        result = text::lower(s);
    } else if (name == "title") {
        result = text::python_title(s);
    } else if (name == "capitalize") {
        result = text::capitalize(s);
    } else if (name == "split" || name == "rsplit") {
        result = string_list(text::split(s, optional_string(arg(0, "sep"), "split's sep"),
                                         int_arg(arg(1, "maxsplit"), -1, "split's maxsplit"),
                                         name == "rsplit"));
    } else if (name == "splitlines") {
        result = string_list(text::splitlines(s));
    } else if (name == "startswith" || name == "endswith") {
        result = affix_match(s, arg(0, "prefix"), name == "startswith");
    } else if (name == "replace") {
        result = text::replace(s, string_arg(arg(0, "old"), "replace's old"),
                               string_arg(arg(1, "new"), "replace's new"),
                               int_arg(arg(2, "count"), -1, "replace's count"));
    } else if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
        const std::string sub = string_arg(arg(0, "sub"), name + "'s argument");
        const std::size_t at = name[0] == 'r' ? s.rfind(sub) : s.find(sub);
        if (at == std::string::npos && name.find("index") != std::string::npos)
            fail(ErrorCode::kInvalidArgument, "chat template: substring not found");
        result = at == std::string::npos ? std::int64_t{-1} : char_index(s, at);
    } else if (name == "count") {
        const std::string sub = string_arg(arg(0, "sub"), "count's argument");
        std::int64_t count = 0;
        if (sub.empty()) {
            count = static_cast<std::int64_t>(code_point_count(s)) + 1;
        } else {
            for (std::size_t at = s.find(sub); at != std::string::npos;
                 at = s.find(sub, at + sub.size()))
                ++count;
        }
        result = count;
    } else if (name == "join") {
        const Value items = arg(0, "iterable");
        std::string out;
        bool first = true;
        const List list = items.is_list() ? items.as_list() : List{};
        for (const Value& item : list) {
            if (!first) out += s;
            first = false;
            out += string_arg(item, "join's items");
        }
        result = std::move(out);
    } else if (name == "format") {
        result = format_string(s, args);
    } else if (name == "removeprefix" || name == "removesuffix") {
        const std::string affix = string_arg(arg(0, "affix"), name + "'s argument");
        std::string out = s;
        if (affix_match(s, Value(affix), name == "removeprefix") && !affix.empty())
            out = name == "removeprefix" ? s.substr(affix.size())
                                         : s.substr(0, s.size() - affix.size());
        result = std::move(out);
    } else if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" ||
               name == "isupper" || name == "islower") {
        bool all = !s.empty();
        bool any_cased = false;
        for (const std::string_view cp : code_points(s)) {
            const unsigned char c = static_cast<unsigned char>(cp[0]);
            const bool ascii = cp.size() == 1;
            if (name == "isdigit") all &= ascii && std::isdigit(c);
            if (name == "isalpha") all &= !ascii || std::isalpha(c);
            if (name == "isalnum") all &= !ascii || std::isalnum(c);
            if (name == "isspace") all &= text::is_space(cp);
            if (name == "isupper") {
                all &= !(ascii && std::islower(c));
                any_cased |= ascii && std::isupper(c);
            }
            if (name == "islower") {
                all &= !(ascii && std::isupper(c));
                any_cased |= ascii && std::islower(c);
            }
        }
        if (name == "isupper" || name == "islower") all = all && any_cased;
        result = all;
    } else {
        return Undefined{};
    }
    if (result.is_string()) interp.charge(result.as_string().size());
    return result;
}

[[noreturn]] void immutable(const Value& object, const std::string& name) {
    fail(ErrorCode::kInvalidArgument,
         "chat template: access to attribute '{}' of '{}' object is unsafe: templates cannot "
         "change lists or dicts (use namespace())",
         name, object.type_name());
}

bool is_string_method(const std::string& name) {
    static const std::unordered_set<std::string> kNames = {
        "strip",      "lstrip",  "rstrip",       "upper",        "lower",      "title",
        "capitalize", "split",   "rsplit",       "splitlines",   "startswith", "endswith",
        "replace",    "find",    "rfind",        "index",        "rindex",     "count",
        "join",       "format",  "removeprefix", "removesuffix", "isdigit",    "isalpha",
        "isalnum",    "isspace", "isupper",      "islower"};
    return kNames.count(name) != 0;
}

}  // namespace

Value builtin_method(const Value& object, const std::string& name) {
    if (object.is_string()) {
        if (!is_string_method(name)) return Undefined{};
        return make_callable("str." + name,
                             [s = object.as_string(), name](Interpreter& interp, CallArgs& args) {
                                 return string_method(s, name, interp, args);
                             });
    }
    if (object.is_dict()) {
        if (name == "items" || name == "keys" || name == "values") {
            return make_callable("dict." + name, [object, name](Interpreter& interp, CallArgs&) {
                List out;
                for (const auto& [key, value] : object.as_dict().items) {
                    if (name == "items") {
                        out.push_back(Value::tuple({key, value}));
                    } else {
                        out.push_back(name == "keys" ? key : value);
                    }
                }
                interp.charge(out.size() * sizeof(Value));
                return Value(std::move(out));
            });
        }
        if (name == "get") {
            return make_callable("dict.get", [object](Interpreter&, CallArgs& args) {
                const Value* found = object.as_dict().find(argument(args, 0, "key"));
                if (found != nullptr) return *found;
                const Value fallback = argument(args, 1, "default");
                return fallback.is_undefined() ? Value(None{}) : fallback;
            });
        }
        if (name == "copy")
            return make_callable("dict.copy", [object](Interpreter&, CallArgs&) { return object; });
        if (name == "pop" || name == "popitem" || name == "setdefault" || name == "update" ||
            name == "clear")
            return make_callable("dict." + name, [object, name](Interpreter&, CallArgs&) -> Value {
                immutable(object, name);
            });
        return Undefined{};
    }
    if (object.is_list()) {
        if (name == "index" || name == "count") {
            return make_callable("list." + name,
                                 [object, name](Interpreter&, CallArgs& args) -> Value {
                                     const Value needle = argument(args, 0, "value");
                                     const List& list = object.as_list();
                                     std::int64_t count = 0;
                                     for (std::size_t i = 0; i < list.size(); ++i) {
                                         if (!equal(list[i], needle)) continue;
                                         if (name == "index") return static_cast<std::int64_t>(i);
                                         ++count;
                                     }
                                     if (name == "index")
                                         fail(ErrorCode::kInvalidArgument,
                                              "chat template: {} is not in list", repr(needle));
                                     return count;
                                 });
        }
        if (name == "copy")
            return make_callable("list.copy", [object](Interpreter&, CallArgs&) { return object; });
        if (name == "append" || name == "extend" || name == "insert" || name == "pop" ||
            name == "remove" || name == "reverse" || name == "sort" || name == "clear")
            return make_callable("list." + name, [object, name](Interpreter&, CallArgs&) -> Value {
                immutable(object, name);
            });
    }
    return Undefined{};
}

}  // namespace llmserve::chat
