// Python's str operations on UTF-8 text (code points, Unicode case mapping and whitespace), shared
// by the str methods and the filters.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::chat::text {

// str.strip / lstrip / rstrip: `chars` absent means whitespace (str.isspace).
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left,
                  bool right);
std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string python_title(std::string_view s);  // str.title()
std::string jinja_title(std::string_view s);   // Jinja's |title: words split at - space ( { [ <
std::string capitalize(std::string_view s);
// str.replace(old, new, count); count < 0: all.
std::string replace(std::string_view s, std::string_view old, std::string_view replacement,
                    long long count);
// str.split(sep, maxsplit) / rsplit; sep absent: runs of whitespace.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep,
                               long long maxsplit, bool from_right = false);
std::vector<std::string> splitlines(std::string_view s);
bool is_space(std::string_view code_point);
std::string html_escape(std::string_view s);

}  // namespace llmserve::chat::text
