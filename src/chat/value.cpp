#include "chat/value.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "common/error.h"

namespace llmserve::chat {
namespace {

// Nesting deeper than this (input JSON, or values a template builds) is refused rather than
// risking the stack.
constexpr int kMaxNesting = 256;

void check_depth(int depth) {
    if (depth > kMaxNesting)
        fail(ErrorCode::kInvalidArgument, "chat template: a value is nested deeper than {} levels",
             kMaxNesting);
}

bool equal_at(const Value& a, const Value& b, int depth) {
    check_depth(depth);
    if (a.is_number() && b.is_number()) {
        if (!a.is_float() && !b.is_float()) return a.to_int() == b.to_int();
        return a.to_double() == b.to_double();
    }
    if (a.is_string() && b.is_string()) return a.as_string() == b.as_string();
    if (a.is_none() && b.is_none()) return true;
    if (a.is_undefined() && b.is_undefined()) return true;
    if (a.is_list() && b.is_list()) {
        const List& x = a.as_list();
        const List& y = b.as_list();
        if (x.size() != y.size()) return false;
        for (std::size_t i = 0; i < x.size(); ++i)
            if (!equal_at(x[i], y[i], depth + 1)) return false;
        return true;
    }
    if (a.is_dict() && b.is_dict()) {
        const Dict& x = a.as_dict();
        const Dict& y = b.as_dict();
        if (x.items.size() != y.items.size()) return false;
        for (const auto& [key, value] : x.items) {
            const Value* other = y.find(key);
            if (other == nullptr || !equal_at(value, *other, depth + 1)) return false;
        }
        return true;
    }
    if (a.is_namespace() && b.is_namespace()) return a.as_namespace() == b.as_namespace();
    if (a.is_callable() && b.is_callable()) return &a.as_callable() == &b.as_callable();
    return false;
}

bool less_at(const Value& a, const Value& b, int depth) {
    check_depth(depth);
    if (a.is_number() && b.is_number()) {
        if (!a.is_float() && !b.is_float()) return a.to_int() < b.to_int();
        return a.to_double() < b.to_double();
    }
    // UTF-8 byte order is code point order, which is Python's string order.
    if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
    if (a.is_list() && b.is_list()) {
        const List& x = a.as_list();
        const List& y = b.as_list();
        for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) {
            if (equal_at(x[i], y[i], depth + 1)) continue;
            return less_at(x[i], y[i], depth + 1);
        }
        return x.size() < y.size();
    }
    fail(ErrorCode::kInvalidArgument,
         "chat template: '<' is not supported between instances of '{}' and '{}'", a.type_name(),
         b.type_name());
}

std::string repr_string(const std::string& text) {
    const bool has_single = text.find('\'') != std::string::npos;
    const bool has_double = text.find('"') != std::string::npos;
    const char quote = has_single && !has_double ? '"' : '\'';
    std::string out(1, quote);
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == quote || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (byte < 0x20 || byte == 0x7f) {
            out += fmt::format("\\x{:02x}", byte);
        } else {
            out += c;
        }
    }
    out += quote;
    return out;
}

std::string str_at(const Value& value, bool quoted, int depth) {
    check_depth(depth);
    if (value.is_string()) return quoted ? repr_string(value.as_string()) : value.as_string();
    if (value.is_undefined()) return "";
    if (value.is_none()) return "None";
    if (value.is_bool()) return value.as_bool() ? "True" : "False";
    if (value.is_int()) return std::to_string(value.as_int());
    if (value.is_float()) return python_float_repr(value.as_float());
    if (value.is_list()) {
        const List& list = value.as_list();
        std::string out = value.is_tuple() ? "(" : "[";
        bool first = true;
        for (const Value& item : list) {
            if (!first) out += ", ";
            first = false;
            out += str_at(item, true, depth + 1);
        }
        if (value.is_tuple()) return out + (list.size() == 1 ? ",)" : ")");
        return out + "]";
    }
    const Dict* dict = value.is_dict()        ? &value.as_dict()
                       : value.is_namespace() ? &value.as_namespace()->attributes
                                              : nullptr;
    if (dict != nullptr) {
        std::string out = value.is_namespace() ? "<Namespace {" : "{";
        bool first = true;
        for (const auto& [key, item] : dict->items) {
            if (!first) out += ", ";
            first = false;
            out += str_at(key, true, depth + 1) + ": " + str_at(item, true, depth + 1);
        }
        return out + (value.is_namespace() ? "}>" : "}");
    }
    return fmt::format("<function {}>", value.as_callable().name);
}

void append_json_string(std::string& out, const std::string& text, bool ensure_ascii) {
    out += '"';
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto byte = static_cast<unsigned char>(text[i]);
        switch (byte) {
            case '"':
                out += "\\\"";
                continue;
            case '\\':
                out += "\\\\";
                continue;
            case '\n':
                out += "\\n";
                continue;
            case '\r':
                out += "\\r";
                continue;
            case '\t':
                out += "\\t";
                continue;
            case '\b':
                out += "\\b";
                continue;
            case '\f':
                out += "\\f";
                continue;
            default:
                break;
        }
        if (byte < 0x20) {
            out += fmt::format("\\u{:04x}", byte);
        } else if (byte < 0x80 || !ensure_ascii) {
            out += text[i];
        } else {
            // Decode one UTF-8 sequence and write it as \uXXXX (a surrogate pair above U+FFFF).
            const int length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1;
            std::uint32_t code = length == 1 ? 0xFFFD : byte & (0x7F >> length);
            for (int k = 1; k < length && i + 1 < text.size(); ++k)
                code = (code << 6) | (static_cast<unsigned char>(text[++i]) & 0x3F);
            if (code >= 0x10000) {
                code -= 0x10000;
                out += fmt::format("\\u{:04x}\\u{:04x}", 0xD800 + (code >> 10),
                                   0xDC00 + (code & 0x3FF));
            } else {
                out += fmt::format("\\u{:04x}", code);
            }
        }
    }
    out += '"';
}

void json_at(std::string& out, const Value& value, const JsonStyle& style, int depth) {
    check_depth(depth);
    const auto newline = [&](int level) {
        if (style.indent < 0) return;
        out += '\n';
        out.append(static_cast<std::size_t>(style.indent) * level, ' ');
    };
    const std::string item_separator =
        style.indent >= 0 && style.item_separator == ", " ? "," : style.item_separator;
    if (value.is_none()) {
        out += "null";
    } else if (value.is_bool()) {
        out += value.as_bool() ? "true" : "false";
    } else if (value.is_int()) {
        out += std::to_string(value.as_int());
    } else if (value.is_float()) {
        const double d = value.as_float();
        out += std::isnan(d)   ? "NaN"
               : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity")
                               : python_float_repr(d);
    } else if (value.is_string()) {
        append_json_string(out, value.as_string(), style.ensure_ascii);
    } else if (value.is_list()) {
        const List& list = value.as_list();
        if (list.empty()) {
            out += "[]";
            return;
        }
        out += '[';
        for (std::size_t i = 0; i < list.size(); ++i) {
            if (i > 0) out += item_separator;
            newline(depth + 1);
            json_at(out, list[i], style, depth + 1);
        }
        newline(depth);
        out += ']';
    } else if (value.is_dict() || value.is_namespace()) {
        const Dict& dict = value.is_dict() ? value.as_dict() : value.as_namespace()->attributes;
        if (dict.items.empty()) {
            out += "{}";
            return;
        }
        std::vector<const std::pair<Value, Value>*> items;
        for (const auto& item : dict.items) items.push_back(&item);
        if (style.sort_keys)
            std::stable_sort(items.begin(), items.end(),
                             [](const auto* a, const auto* b) { return less(a->first, b->first); });
        out += '{';
        bool first = true;
        for (const auto* item : items) {
            if (!first) out += item_separator;
            first = false;
            newline(depth + 1);
            if (item->first.is_string()) {
                append_json_string(out, item->first.as_string(), style.ensure_ascii);
            } else if (item->first.is_int() || item->first.is_bool() || item->first.is_float() ||
                       item->first.is_none()) {
                // json.dumps turns these keys into strings ("1", "true", "null").
                std::string key;
                json_at(key, item->first, style, depth + 1);
                append_json_string(out, key, style.ensure_ascii);
            } else {
                fail(ErrorCode::kInvalidArgument,
                     "chat template: tojson: keys must be str, int, float, bool or None, not {}",
                     item->first.type_name());
            }
            out += style.key_separator;
            json_at(out, item->second, style, depth + 1);
        }
        newline(depth);
        out += '}';
    } else {
        fail(ErrorCode::kInvalidArgument,
             "chat template: tojson: Object of type {} is not JSON serializable",
             value.type_name());
    }
}

template <typename Json>
Value from_json_at(const Json& json, int depth) {
    check_depth(depth);
    switch (json.type()) {
        case Json::value_t::null:
            return None{};
        case Json::value_t::boolean:
            return json.template get<bool>();
        case Json::value_t::number_integer:
            return json.template get<std::int64_t>();
        case Json::value_t::number_unsigned: {
            const auto u = json.template get<std::uint64_t>();
            if (u > static_cast<std::uint64_t>(INT64_MAX)) return static_cast<double>(u);
            return static_cast<std::int64_t>(u);
        }
        case Json::value_t::number_float:
            return json.template get<double>();
        case Json::value_t::string:
            return json.template get<std::string>();
        case Json::value_t::array: {
            List list;
            list.reserve(json.size());
            for (const auto& item : json) list.push_back(from_json_at(item, depth + 1));
            return list;
        }
        case Json::value_t::object: {
            Dict dict;
            dict.items.reserve(json.size());
            for (const auto& [key, item] : json.items())
                dict.items.emplace_back(Value(key), from_json_at(item, depth + 1));
            return dict;
        }
        default:
            return None{};
    }
}

}  // namespace

const Value* Dict::find(const Value& key) const {
    for (const auto& item : items)
        if (equal(item.first, key)) return &item.second;
    return nullptr;
}

void Dict::set(Value key, Value value) {
    for (auto& item : items) {
        if (equal(item.first, key)) {
            item.second = std::move(value);
            return;
        }
    }
    items.emplace_back(std::move(key), std::move(value));
}

double Value::to_double() const {
    if (is_float()) return as_float();
    return static_cast<double>(to_int());
}

std::string Value::type_name() const {
    if (is_undefined()) return "Undefined";
    if (is_none()) return "NoneType";
    if (is_bool()) return "bool";
    if (is_int()) return "int";
    if (is_float()) return "float";
    if (is_string()) return "str";
    if (is_list()) return tuple_ ? "tuple" : "list";
    if (is_dict()) return "dict";
    if (is_namespace()) return "Namespace";
    return "function";
}

Value make_callable(std::string name, std::function<Value(Interpreter&, CallArgs&)> fn) {
    return Value(std::make_shared<const Callable>(Callable{std::move(name), std::move(fn)}));
}

bool truthy(const Value& value) {
    if (value.is_undefined() || value.is_none()) return false;
    if (value.is_bool()) return value.as_bool();
    if (value.is_int()) return value.as_int() != 0;
    if (value.is_float()) return value.as_float() != 0.0;
    if (value.is_string()) return !value.as_string().empty();
    if (value.is_list()) return !value.as_list().empty();
    if (value.is_dict()) return !value.as_dict().items.empty();
    return true;
}

bool equal(const Value& a, const Value& b) {
    return equal_at(a, b, 0);
}

bool less(const Value& a, const Value& b) {
    return less_at(a, b, 0);
}

std::string to_str(const Value& value) {
    return str_at(value, false, 0);
}

std::string repr(const Value& value) {
    return str_at(value, true, 0);
}

// Python's repr(float): the shortest digits that round-trip, positional for exponents in
// [-4, 16), else scientific with a sign and at least two exponent digits; always a '.' or 'e'.
std::string python_float_repr(double value) {
    if (std::isnan(value)) return "nan";
    if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
    char buffer[64];
    const auto result =
        std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
    const std::string text(buffer, result.ptr);
    const std::size_t e = text.find('e');
    std::string mantissa = text.substr(0, e);
    const int exponent = std::stoi(text.substr(e + 1));
    const bool negative = mantissa[0] == '-';
    if (negative) mantissa.erase(0, 1);
    std::string digits;
    for (const char c : mantissa)
        if (c != '.') digits += c;
    std::string out = negative ? "-" : "";
    if (exponent >= -4 && exponent < 16) {
        if (exponent < 0) {
            out += "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
        } else if (static_cast<std::size_t>(exponent) + 1 >= digits.size()) {
            out += digits + std::string(exponent + 1 - digits.size(), '0') + ".0";
        } else {
            out += digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
        }
        return out;
    }
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    return out + fmt::format("e{}{:02d}", exponent < 0 ? '-' : '+', std::abs(exponent));
}

Value from_json(const nlohmann::json& json) {
    return from_json_at(json, 0);
}

Value from_json(const nlohmann::ordered_json& json) {
    return from_json_at(json, 0);
}

std::string to_json(const Value& value, const JsonStyle& style) {
    std::string out;
    json_at(out, value, style, 0);
    return out;
}

std::vector<std::string_view> code_points(std::string_view text) {
    std::vector<std::string_view> out;
    out.reserve(text.size());
    std::size_t i = 0;
    while (i < text.size()) {
        const auto byte = static_cast<unsigned char>(text[i]);
        std::size_t length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1;
        length = std::min(length, text.size() - i);
        out.push_back(text.substr(i, length));
        i += length;
    }
    return out;
}

std::size_t code_point_count(std::string_view text) {
    std::size_t count = 0;
    for (const char c : text)
        if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++count;
    return count;
}

}  // namespace llmserve::chat
