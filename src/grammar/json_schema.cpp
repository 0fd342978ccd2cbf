#include "grammar/json_schema.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "common/error.h"
#include "grammar/gbnf.h"
#include "grammar/regex.h"
#include "grammar/schema_primitives.h"

namespace llmserve::grammar {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxDepth = 64;
constexpr std::int64_t kMaxCount = 10'000;  // minItems, maxItems, minLength, maxLength
constexpr double kMaxIntegerBound = 1e15;
const std::string kQuote = R"("\"")";

// Keywords that only describe (validators do not assert them either).
const std::set<std::string, std::less<>> kAnnotations = {
    "$schema", "$id",         "$comment",         "title",          "description",
    "default", "examples",    "deprecated",       "readOnly",       "writeOnly",
    "$defs",   "definitions", "contentMediaType", "contentEncoding"};
const std::set<std::string, std::less<>> kSupported = {"type",
                                                       "enum",
                                                       "const",
                                                       "properties",
                                                       "required",
                                                       "additionalProperties",
                                                       "items",
                                                       "prefixItems",
                                                       "minItems",
                                                       "maxItems",
                                                       "anyOf",
                                                       "oneOf",
                                                       "allOf",
                                                       "$ref",
                                                       "pattern",
                                                       "format",
                                                       "minLength",
                                                       "maxLength",
                                                       "minimum",
                                                       "maximum",
                                                       "exclusiveMinimum",
                                                       "exclusiveMaximum"};
const std::set<std::string, std::less<>> kTypes = {"null",   "boolean", "object", "array",
                                                   "number", "integer", "string"};

std::string join(const std::vector<std::string>& parts, std::string_view separator) {
    std::string out;
    for (std::size_t i = 0; i < parts.size(); ++i)
        out += (i ? std::string(separator) : "") + parts[i];
    return out;
}

std::string pointer_token(std::string token) {
    std::string out;
    for (const char c : token) out += c == '~' ? "~0" : c == '/' ? "~1" : std::string(1, c);
    return out;
}

class SchemaCompiler {
  public:
    SchemaCompiler(const Json& root, const JsonSchemaOptions& options)
        : root_(root), options_(options) {}

    std::string compile() {
        const std::string root_expr = value(root_, "", 0);
        std::string out = "root ::= " + root_expr + "\n";
        for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
        return out + json_value_rules();
    }

  private:
    [[noreturn]] void fail_at(const std::string& where, std::string_view message) const {
        fail_param("json_schema", "json_schema at {}: {}", where.empty() ? "/" : where, message);
    }

    std::string add_rule(std::string body) {
        rules_.emplace_back(fmt::format("s{}", rules_.size()), std::move(body));
        return rules_.back().first;
    }

    static bool constrains(const std::string& key) { return !kAnnotations.contains(key); }

    std::vector<std::string> constraining_keys(const Json& s) const {
        std::vector<std::string> keys;
        for (const auto& [key, unused] : s.items())
            if (constrains(key)) keys.push_back(key);
        return keys;
    }

    std::string value(const Json& s, const std::string& where, int depth) {
        if (depth > kMaxDepth)
            fail_at(where, fmt::format("schemas nest deeper than {}", kMaxDepth));
        if (s.is_boolean()) {
            if (s.get<bool>()) return "json-value";
            fail_at(where, "the schema false admits no value");
        }
        if (!s.is_object()) fail_at(where, "a schema must be an object or a boolean");
        for (const auto& [key, unused] : s.items())
            if (!kAnnotations.contains(key) && !kSupported.contains(key))
                fail_at(where, fmt::format("keyword '{}' is not supported (it cannot be enforced "
                                           "while generating)",
                                           key));
        const auto keys = constraining_keys(s);
        if (s.contains("$ref")) {
            if (keys.size() > 1)
                fail_at(where, "'$ref' beside other constraining keywords is not supported");
            return ref_rule(s["$ref"], where + "/$ref", depth);
        }
        if (s.contains("enum") || s.contains("const")) return enum_expr(s, where);
        for (const char* combinator : {"anyOf", "oneOf"}) {
            if (!s.contains(combinator)) continue;
            if (keys.size() > 1)
                fail_at(where, fmt::format("'{}' beside other constraining keywords is not "
                                           "supported",
                                           combinator));
            const Json& branches = s[combinator];
            if (!branches.is_array() || branches.empty())
                fail_at(where + "/" + combinator, "expected a non-empty array of schemas");
            std::vector<std::string> parts;
            for (std::size_t i = 0; i < branches.size(); ++i)
                if (branches[i] != Json(false))  // admits nothing: no branch to generate
                    parts.push_back(value(
                        branches[i], fmt::format("{}/{}/{}", where, combinator, i), depth + 1));
            if (parts.empty())
                fail_at(where + "/" + combinator, "every branch is the schema false");
            return "(" + join(parts, " | ") + ")";
        }
        if (s.contains("allOf")) {
            const Json& all = s["allOf"];
            if (all.is_array() && std::all_of(all.begin(), all.end(), [](const Json& part) {
                    return part == Json(true);
                })) {
                Json rest = s;  // parts that admit anything add nothing
                rest.erase("allOf");
                return value(rest, where, depth + 1);
            }
            return value(merge_all_of(s, where, depth), where, depth + 1);
        }
        return typed_value(s, where, depth);
    }

    std::string ref_rule(const Json& ref, const std::string& where, int depth) {
        if (!ref.is_string()) fail_at(where, "'$ref' must be a string");
        const std::string text = ref.get<std::string>();
        if (!text.starts_with("#"))
            fail_at(where, fmt::format("'$ref' '{}': only references inside this schema ('#...') "
                                       "are supported",
                                       text));
        const std::string pointer = text.substr(1);
        if (const auto it = ref_rules_.find(pointer); it != ref_rules_.end()) return it->second;
        const Json* target = nullptr;
        try {
            target = &root_.at(Json::json_pointer(pointer));
        } catch (const nlohmann::json::exception&) {
            fail_at(where, fmt::format("'$ref' '{}' does not resolve inside this schema", text));
        }
        const std::string name = add_rule("");
        const std::size_t index = rules_.size() - 1;
        ref_rules_.emplace(pointer, name);
        rules_[index].second = value(*target, pointer, depth + 1);
        return name;
    }

    std::vector<std::string> types_of(const Json& s, const std::string& where) const {
        std::vector<std::string> types;
        if (!s.contains("type")) return {kTypes.begin(), kTypes.end()};
        const Json& type = s["type"];
        for (const Json& t : type.is_array() ? type : Json::array({type})) {
            if (!t.is_string() || !kTypes.contains(t.get<std::string>()))
                fail_at(where + "/type", fmt::format("{} is not a JSON Schema type", t.dump()));
            types.push_back(t.get<std::string>());
        }
        if (types.empty()) fail_at(where + "/type", "an empty list of types admits no value");
        return types;
    }

    static bool has_type(const Json& v, const std::string& type) {
        if (type == "null") return v.is_null();
        if (type == "boolean") return v.is_boolean();
        if (type == "object") return v.is_object();
        if (type == "array") return v.is_array();
        if (type == "string") return v.is_string();
        if (type == "number") return v.is_number();
        return v.is_number_integer() ||
               (v.is_number_float() && std::trunc(v.get<double>()) == v.get<double>());
    }

    std::string literal(const Json& v) const {
        if (options_.sorted_properties) return gbnf_literal(nlohmann::json::parse(v.dump()).dump());
        return gbnf_literal(v.dump());
    }

    std::string enum_expr(const Json& s, const std::string& where) {
        for (const auto& key : constraining_keys(s))
            if (key != "enum" && key != "const" && key != "type")
                fail_at(where,
                        fmt::format("'enum'/'const' together with '{}' is not supported", key));
        std::vector<Json> values;
        if (s.contains("enum")) {
            if (!s["enum"].is_array() || s["enum"].empty())
                fail_at(where + "/enum", "expected a non-empty array");
            for (const Json& v : s["enum"])
                if (!s.contains("const") || v == s["const"]) values.push_back(v);
        } else {
            values.push_back(s["const"]);
        }
        const auto types = types_of(s, where);
        std::vector<std::string> parts;
        for (const Json& v : values) {
            const bool typed = std::any_of(types.begin(), types.end(),
                                           [&](const std::string& t) { return has_type(v, t); });
            if (typed) parts.push_back(literal(v));
        }
        if (parts.empty()) fail_at(where, "no value satisfies both 'enum'/'const' and 'type'");
        return "(" + join(parts, " | ") + ")";
    }

    Json merge_all_of(const Json& s, const std::string& where, int depth) {
        Json merged = {
            {"type", "object"}, {"properties", Json::object()}, {"required", Json::array()}};
        std::vector<std::pair<const Json*, std::string>> parts{{&s, where}};
        const Json& all = s["allOf"];
        if (!all.is_array() || all.empty()) fail_at(where + "/allOf", "expected a non-empty array");
        for (std::size_t i = 0; i < all.size(); ++i)
            parts.emplace_back(&all[i], fmt::format("{}/allOf/{}", where, i));
        for (auto [part, at] : parts) {
            if (*part == Json(true)) continue;
            if (*part == Json(false)) fail_at(at, "'allOf' with the schema false admits no value");
            for (int hops = 0; part->is_object() && part->contains("$ref") && hops < kMaxDepth;
                 ++hops) {
                const std::string text =
                    (*part)["$ref"].is_string() ? (*part)["$ref"].get<std::string>() : "";
                try {
                    part =
                        &root_.at(Json::json_pointer(text.starts_with("#") ? text.substr(1) : "?"));
                } catch (const nlohmann::json::exception&) {
                    fail_at(at,
                            fmt::format("'$ref' '{}' does not resolve inside this schema", text));
                }
            }
            if (!part->is_object()) fail_at(at, "'allOf' is supported for object schemas only");
            for (const auto& [key, v] : part->items()) {
                if (!constrains(key) || (key == "allOf" && part == &s)) continue;
                if (key == "type" && v == "object") continue;
                if (key == "properties" && v.is_object()) {
                    for (const auto& [name, schema] : v.items()) {
                        if (merged["properties"].contains(name))
                            fail_at(at, fmt::format("property '{}' appears in two 'allOf' parts",
                                                    name));
                        merged["properties"][name] = schema;
                    }
                } else if (key == "required" && v.is_array()) {
                    for (const Json& name : v) merged["required"].push_back(name);
                } else {
                    fail_at(at, fmt::format("'allOf' is supported for object schemas with "
                                            "'properties' and 'required' only, not '{}'",
                                            key));
                }
            }
        }
        (void)depth;
        merged["additionalProperties"] = false;
        return merged;
    }

    std::string typed_value(const Json& s, const std::string& where, int depth) {
        auto types = types_of(s, where);
        const bool number = std::find(types.begin(), types.end(), "number") != types.end();
        std::vector<std::string> parts;
        for (const std::string& type : types) {
            if (type == "null") parts.push_back(R"("null")");
            if (type == "boolean") parts.push_back(R"(("true" | "false"))");
            if (type == "string") parts.push_back(string_expr(s, where));
            if (type == "integer" && !number) parts.push_back(integer_expr(s, where));
            if (type == "number") parts.push_back(number_expr(s, where));
            if (type == "array") parts.push_back(array_expr(s, where, depth));
            if (type == "object") parts.push_back(object_expr(s, where, depth));
        }
        return parts.size() == 1 ? parts[0] : "(" + join(parts, " | ") + ")";
    }

    std::optional<std::int64_t> count(const Json& s, const char* key,
                                      const std::string& where) const {
        if (!s.contains(key)) return std::nullopt;
        const Json& v = s[key];
        if (!has_type(v, "integer") || v.get<double>() < 0)
            fail_at(where + "/" + key, "expected a non-negative integer");
        if (v.get<double>() > kMaxCount)
            fail_at(where + "/" + key, fmt::format("counts above {} are not supported", kMaxCount));
        return static_cast<std::int64_t>(v.get<double>());
    }

    std::string string_expr(const Json& s, const std::string& where) {
        const auto min = count(s, "minLength", where), max = count(s, "maxLength", where);
        const int kinds = s.contains("pattern") + s.contains("format") + (min || max ? 1 : 0);
        if (kinds > 1)
            fail_at(where,
                    "combining 'pattern', 'format' and 'minLength'/'maxLength' is not supported");
        if (s.contains("pattern")) {
            if (!s["pattern"].is_string()) fail_at(where + "/pattern", "expected a string");
            try {
                return "(" + kQuote + " " +
                       regex_to_gbnf(s["pattern"].get<std::string>(), RegexMode::kJsonString) +
                       " " + kQuote + ")";
            } catch (const Error& e) {
                fail_at(where + "/pattern", e.what());
            }
        }
        if (s.contains("format")) {
            const Json& format = s["format"];
            const auto expr =
                format.is_string() ? format_string(format.get<std::string>()) : std::nullopt;
            if (!expr)
                fail_at(where + "/format", fmt::format("format {} is not supported (supported: "
                                                       "date-time, date, time, uuid, email)",
                                                       format.dump()));
            return *expr;
        }
        if (!min && !max) return "json-string";
        if (min && max && *min > *max) fail_at(where, "minLength is above maxLength");
        const std::string upper = max ? std::to_string(*max) : "";
        return fmt::format("({} json-char{{{},{}}} {})", kQuote, min.value_or(0), upper, kQuote);
    }

    std::optional<double> number_keyword(const Json& s, const char* key,
                                         const std::string& where) const {
        if (!s.contains(key)) return std::nullopt;
        if (!s[key].is_number()) fail_at(where + "/" + key, "expected a number");
        return s[key].get<double>();
    }

    std::string integer_expr(const Json& s, const std::string& where) {
        std::optional<double> low, high;
        const auto tighten = [](std::optional<double>& bound, std::optional<double> v, bool up) {
            if (v) bound = bound ? (up ? std::max(*bound, *v) : std::min(*bound, *v)) : *v;
        };
        if (auto v = number_keyword(s, "minimum", where)) tighten(low, std::ceil(*v), true);
        if (auto v = number_keyword(s, "exclusiveMinimum", where))
            tighten(low, std::floor(*v) + 1, true);
        if (auto v = number_keyword(s, "maximum", where)) tighten(high, std::floor(*v), false);
        if (auto v = number_keyword(s, "exclusiveMaximum", where))
            tighten(high, std::ceil(*v) - 1, false);
        for (const auto& bound : {low, high})
            if (bound && std::abs(*bound) > kMaxIntegerBound)
                fail_at(where, "integer bounds beyond ±10^15 are not supported");
        if (low && high && *low > *high) fail_at(where, "no integer lies between the bounds");
        std::optional<std::int64_t> a, b;
        if (low) a = static_cast<std::int64_t>(*low);
        if (high) b = static_cast<std::int64_t>(*high);
        return integer_range(a, b);
    }

    std::string number_expr(const Json& s, const std::string& where) {
        const auto minimum = number_keyword(s, "minimum", where);
        for (const char* key : {"maximum", "exclusiveMinimum", "exclusiveMaximum"})
            if (s.contains(key))
                fail_at(where + "/" + key, fmt::format("'{}' on numbers is not supported (only "
                                                       "integers take bounds; numbers take "
                                                       "minimum: 0)",
                                                       key));
        if (!minimum) return "json-number";
        if (*minimum != 0) fail_at(where + "/minimum", "on numbers only minimum: 0 is supported");
        return R"((json-natural ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?))";
    }

    std::string array_expr(const Json& s, const std::string& where, int depth) {
        std::vector<std::string> prefix;
        if (s.contains("prefixItems")) {
            const Json& items = s["prefixItems"];
            if (!items.is_array()) fail_at(where + "/prefixItems", "expected an array of schemas");
            for (std::size_t i = 0; i < items.size(); ++i)
                prefix.push_back(add_rule(
                    value(items[i], fmt::format("{}/prefixItems/{}", where, i), depth + 1)));
        }
        std::optional<std::string> item = "json-value";
        if (s.contains("items")) {
            const Json& items = s["items"];
            if (items.is_array())
                fail_at(where + "/items",
                        "'items' as an array is not supported; use 'prefixItems'");
            if (items.is_boolean() && !items.get<bool>())
                item.reset();
            else
                item = add_rule(value(items, where + "/items", depth + 1));
        }
        const std::int64_t min = count(s, "minItems", where).value_or(0);
        std::optional<std::int64_t> max = count(s, "maxItems", where);
        if (!item) max = std::min<std::int64_t>(max.value_or(prefix.size()), prefix.size());
        if (max && min > *max)
            fail_at(where, "minItems is above the most items the array can hold");
        return "(\"[\" " + items_from(0, true, prefix, item, min, max) + " \"]\")";
    }

    // Items j, j+1, ... of an array that already holds j (first: none yet).
    static std::string items_from(std::size_t j, bool first, const std::vector<std::string>& prefix,
                                  const std::optional<std::string>& item, std::int64_t min,
                                  std::optional<std::int64_t> max) {
        const auto held = static_cast<std::int64_t>(j);
        if (max && held >= *max) return R"("")";
        const std::string comma = first ? "" : R"("," )";
        if (j < prefix.size()) {
            const std::string elem = "(" + comma + prefix[j] + " " +
                                     items_from(j + 1, false, prefix, item, min, max) + ")";
            return held >= min ? elem + "?" : elem;
        }
        if (!item) return R"("")";
        const std::int64_t low = std::max<std::int64_t>(0, min - held);
        const std::string high = max ? std::to_string(*max - held) : "";
        if (!first) return fmt::format(R"(("," {}){{{},{}}})", *item, low, high);
        const std::string more_high = max ? std::to_string(*max - held - 1) : "";
        const std::string body = fmt::format(R"({} ("," {}){{{},{}}})", *item, *item,
                                             std::max<std::int64_t>(0, low - 1), more_high);
        return low == 0 ? "(" + body + ")?" : "(" + body + ")";
    }

    std::string object_expr(const Json& s, const std::string& where, int depth) {
        const Json empty = Json::object();
        const Json& properties = s.contains("properties") ? s["properties"] : empty;
        if (!properties.is_object())
            fail_at(where + "/properties", "expected an object of schemas");
        std::set<std::string> required;
        if (s.contains("required")) {
            if (!s["required"].is_array())
                fail_at(where + "/required", "expected an array of names");
            for (const Json& name : s["required"]) {
                if (!name.is_string() || !properties.contains(name.get<std::string>()))
                    fail_at(where + "/required",
                            fmt::format("required property {} is not listed in "
                                        "'properties'",
                                        name.dump()));
                required.insert(name.get<std::string>());
            }
        }
        const Json* additional =
            s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
        if (properties.empty()) {
            if (additional && additional->is_boolean() && !additional->get<bool>())
                return R"("{}")";
            const std::string v =
                additional
                    ? add_rule(value(*additional, where + "/additionalProperties", depth + 1))
                    : "json-value";
            return fmt::format(R"(("{{" ( json-string ":" {} ( "," json-string ":" {} )* )? "}}"))",
                               v, v);
        }
        if (additional &&
            !additional->is_boolean())  // checked even though only declared ones are generated
            (void)value(*additional, where + "/additionalProperties", depth + 1);
        std::vector<std::pair<std::string, bool>> members;  // (key-value rule, optional)
        std::vector<std::string> names;
        for (const auto& [name, unused] : properties.items()) names.push_back(name);
        if (options_.sorted_properties) std::sort(names.begin(), names.end());
        for (const std::string& name : names) {
            const std::string pointer = where + "/properties/" + pointer_token(name);
            if (properties[name] == Json(false)) {  // the property may not appear
                if (required.contains(name))
                    fail_at(pointer, "a required property whose schema is false admits no value");
                continue;
            }
            const std::string v = value(properties[name], pointer, depth + 1);
            members.emplace_back(add_rule(literal(Json(name)) + R"( ":" )" + v),
                                 !required.contains(name));
        }
        // first_i: members i.. when none is written yet; tail_i: after one was written.
        std::string first = R"("")", tail = R"("")";
        for (std::size_t i = members.size(); i-- > 0;) {
            const auto& [kv, optional] = members[i];
            std::string next_first = kv + " " + tail;
            std::string next_tail = R"("," )" + kv + " " + tail;
            if (optional) {
                next_first += " | " + first;
                next_tail += " | " + tail;
            }
            first = add_rule(next_first);
            tail = add_rule(next_tail);
        }
        return R"(("{" )" + first + R"( "}"))";
    }

    const Json& root_;
    JsonSchemaOptions options_;
    std::vector<std::pair<std::string, std::string>> rules_;
    std::map<std::string, std::string> ref_rules_;
};

}  // namespace

std::string json_schema_to_gbnf(std::string_view schema_json, const JsonSchemaOptions& options) {
    Json schema;
    try {
        schema = Json::parse(schema_json);
    } catch (const nlohmann::json::exception& e) {  // a syntax error, or a number out of range (1e1111)
        fail_param("json_schema", "json_schema: not valid JSON ({})", e.what());
    }
    return SchemaCompiler(schema, options).compile();
}

std::string json_object_gbnf() {
    return "root ::= json-object\n" + json_value_rules();
}

}  // namespace llmserve::grammar
