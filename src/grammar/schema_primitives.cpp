#include "grammar/schema_primitives.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace llmserve::grammar {
namespace {

// Every fixed-width digit string from `low` to `high` (same length, leading zeros allowed).
std::string fixed_width_range(const std::string& low, const std::string& high) {
    if (low == high) return "\"" + low + "\"";
    const std::size_t rest = low.size() - 1;
    const char a = low[0], b = high[0];
    const auto digit_class = [](char from, char to) {
        return from == to ? fmt::format("\"{}\"", from) : fmt::format("[{}-{}]", from, to);
    };
    const auto any_digits = [rest] {
        return rest == 0 ? std::string() : fmt::format(" [0-9]{{{}}}", rest);
    };
    if (rest == 0) return digit_class(a, b);
    const std::string low_rest = low.substr(1), high_rest = high.substr(1);
    if (a == b) return fmt::format("\"{}\" ({})", a, fixed_width_range(low_rest, high_rest));
    const std::string zeros(rest, '0'), nines(rest, '9');
    if (low_rest == zeros && high_rest == nines) return digit_class(a, b) + any_digits();
    std::vector<std::string> parts;
    char middle_from = a, middle_to = b;
    if (low_rest != zeros) {
        parts.push_back(fmt::format("\"{}\" ({})", a, fixed_width_range(low_rest, nines)));
        ++middle_from;
    }
    if (high_rest != nines) --middle_to;
    if (middle_from <= middle_to)
        parts.push_back(digit_class(middle_from, middle_to) + any_digits());
    if (high_rest != nines)
        parts.push_back(fmt::format("\"{}\" ({})", b, fixed_width_range(zeros, high_rest)));
    std::string out = "(";
    for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? " | " : "") + parts[i];
    return out + ")";
}

std::uint64_t power10(std::size_t n) {
    std::uint64_t p = 1;
    while (n--) p *= 10;
    return p;
}

// Non-negative integers in [low, high] (high nullopt: unbounded), JSON spelling (no leading 0).
std::string natural_range(std::uint64_t low, std::optional<std::uint64_t> high) {
    std::vector<std::string> parts;
    const std::size_t low_digits = std::to_string(low).size();
    const std::size_t high_digits = high ? std::to_string(*high).size() : low_digits;
    for (std::size_t n = low_digits; n <= high_digits; ++n) {
        const std::uint64_t first = std::max<std::uint64_t>(low, n == 1 ? 0 : power10(n - 1));
        const std::uint64_t last =
            high ? std::min<std::uint64_t>(*high, power10(n) - 1) : power10(n) - 1;
        if (first > last) continue;
        parts.push_back(fixed_width_range(std::to_string(first), std::to_string(last)));
    }
    if (!high) parts.push_back(fmt::format("[1-9] [0-9]{{{},}}", low_digits));
    std::string out = "(";
    for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? " | " : "") + parts[i];
    return out + ")";
}

}  // namespace

std::string json_value_rules() {
    return R"(json-value ::= json-object | json-array | json-string | json-number | "true" | "false" | "null"
json-object ::= "{" ( json-string ":" json-value ( "," json-string ":" json-value )* )? "}"
json-array ::= "[" ( json-value ( "," json-value )* )? "]"
json-string ::= "\"" json-char* "\""
json-char ::= [^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" json-bmp-escape )
json-bmp-escape ::= [0-9a-cA-CefEF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}
json-number ::= "-"? json-natural ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
json-natural ::= "0" | [1-9] [0-9]*
json-integer ::= "-"? json-natural
)";
}

std::optional<std::string> format_string(std::string_view format) {
    static const std::string kDate =
        R"([0-9]{4} "-" ( ("01" | "03" | "05" | "07" | "08" | "10" | "12") "-" ("0" [1-9] | [12] [0-9] | "3" [01]) | ("04" | "06" | "09" | "11") "-" ("0" [1-9] | [12] [0-9] | "30") | "02-" ("0" [1-9] | "1" [0-9] | "2" [0-8]) ))";
    static const std::string kTime =
        R"(([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,9} )? ( "Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ))";
    // Bounded (a generated output must end): dot-separated parts of up to 32 characters.
    static const std::string kLabel = R"([a-zA-Z0-9] ( [a-zA-Z0-9-]{0,30} [a-zA-Z0-9] )?)";
    static const std::string kLocal = R"([a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,32})";
    std::string body;
    if (format == "date") {
        body = kDate;
    } else if (format == "time") {
        body = kTime;
    } else if (format == "date-time") {
        body = kDate + " \"T\" " + kTime;
    } else if (format == "uuid") {
        body =
            R"([0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12})";
    } else if (format == "email") {
        body =
            kLocal + " ( \".\" " + kLocal + " ){0,3} \"@\" ( " + kLabel + " \".\" ){1,3} " + kLabel;
    } else {
        return std::nullopt;
    }
    return "( \"\\\"\" " + body + " \"\\\"\" )";
}

std::string integer_range(std::optional<std::int64_t> minimum,
                          std::optional<std::int64_t> maximum) {
    if (!minimum && !maximum) return "json-integer";
    std::vector<std::string> parts;
    // Negative part: "-" then the magnitudes in [max(1, -maximum), -minimum].
    if (!minimum || *minimum < 0) {
        const std::uint64_t smallest =
            maximum && *maximum < 0 ? static_cast<std::uint64_t>(-(*maximum + 1)) + 1 : 1;
        std::optional<std::uint64_t> largest;
        if (minimum) largest = static_cast<std::uint64_t>(-(*minimum + 1)) + 1;
        parts.push_back("\"-\" " + natural_range(smallest, largest));
    }
    if (!maximum || *maximum >= 0) {
        const std::uint64_t low =
            minimum && *minimum > 0 ? static_cast<std::uint64_t>(*minimum) : 0;
        std::optional<std::uint64_t> high;
        if (maximum) high = static_cast<std::uint64_t>(*maximum);
        parts.push_back(natural_range(low, high));
    }
    std::string out = "(";
    for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? " | " : "") + parts[i];
    return out + ")";
}

}  // namespace llmserve::grammar
