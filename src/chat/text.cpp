#include "chat/text.h"

#include <utf8proc.h>

#include <algorithm>

#include "chat/value.h"
#include "common/error.h"

namespace llmserve::chat::text {
namespace {

utf8proc_int32_t decode(std::string_view code_point) {
    utf8proc_int32_t value = -1;
    utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(code_point.data()),
                     static_cast<utf8proc_ssize_t>(code_point.size()), &value);
    return value;
}

void encode(std::string& out, utf8proc_int32_t value) {
    utf8proc_uint8_t buffer[4];
    const auto length = utf8proc_encode_char(value, buffer);
    out.append(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(length));
}

// Maps each code point with `map`; bytes that are not valid UTF-8 pass through unchanged.
template <typename Map>
std::string map_code_points(std::string_view s, Map map) {
    std::string out;
    out.reserve(s.size());
    std::size_t index = 0;
    for (const std::string_view cp : code_points(s)) {
        const utf8proc_int32_t value = decode(cp);
        if (value < 0) {
            out += cp;
        } else {
            encode(out, map(value, index));
        }
        ++index;
    }
    return out;
}

bool is_cased(utf8proc_int32_t value) {
    const auto category = utf8proc_category(value);
    return category == UTF8PROC_CATEGORY_LU || category == UTF8PROC_CATEGORY_LL ||
           category == UTF8PROC_CATEGORY_LT;
}

}  // namespace

bool is_space(std::string_view cp) {
    if (cp.size() == 1) {
        const char c = cp[0];
        return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f');
    }
    const utf8proc_int32_t value = decode(cp);
    return value == 0x85 || value == 0xA0 || value == 0x1680 ||
           (value >= 0x2000 && value <= 0x200A) || value == 0x2028 || value == 0x2029 ||
           value == 0x202F || value == 0x205F || value == 0x3000;
}

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left,
                  bool right) {
    const auto cps = code_points(s);
    std::vector<std::string_view> strip_set;
    if (chars) strip_set = code_points(*chars);
    const auto stripped = [&](std::string_view cp) {
        if (!chars) return is_space(cp);
        return std::find(strip_set.begin(), strip_set.end(), cp) != strip_set.end();
    };
    std::size_t begin = 0;
    std::size_t end = cps.size();
    if (left)
        while (begin < end && stripped(cps[begin])) ++begin;
    if (right)
        while (end > begin && stripped(cps[end - 1])) --end;
    if (begin == end) return {};
    const char* from = cps[begin].data();
    const char* to = cps[end - 1].data() + cps[end - 1].size();
    return std::string(from, to);
}

std::string upper(std::string_view s) {
    return map_code_points(s, [](utf8proc_int32_t c, std::size_t) { return utf8proc_toupper(c); });
}

std::string lower(std::string_view s) {
    return map_code_points(s, [](utf8proc_int32_t c, std::size_t) { return utf8proc_tolower(c); });
}

std::string python_title(std::string_view s) {
    bool previous_cased = false;
    return map_code_points(s, [&](utf8proc_int32_t c, std::size_t) {
        const bool cased = is_cased(c);
        const utf8proc_int32_t mapped =
            cased ? (previous_cased ? utf8proc_tolower(c) : utf8proc_totitle(c)) : c;
        previous_cased = cased;
        return mapped;
    });
}

std::string jinja_title(std::string_view s) {
    bool word_start = true;
    return map_code_points(s, [&](utf8proc_int32_t c, std::size_t) {
        const bool separator =
            c == '-' || c == '(' || c == '{' || c == '[' || c == '<' ||
            (c < 0x80 &&
             std::string_view(" \t\n\r\f\v").find(static_cast<char>(c)) != std::string_view::npos);
        if (separator) {
            word_start = true;
            return c;
        }
        const utf8proc_int32_t mapped = word_start ? utf8proc_toupper(c) : utf8proc_tolower(c);
        word_start = false;
        return mapped;
    });
}

std::string capitalize(std::string_view s) {
    return map_code_points(s, [](utf8proc_int32_t c, std::size_t index) {
        return index == 0 ? utf8proc_totitle(c) : utf8proc_tolower(c);
    });
}

std::string replace(std::string_view s, std::string_view old, std::string_view replacement,
                    long long count) {
    std::string out;
    if (old.empty()) {
        // Python inserts the replacement before every code point and at the end.
        long long done = 0;
        for (const std::string_view cp : code_points(s)) {
            if (count < 0 || done < count) {
                out += replacement;
                ++done;
            }
            out += cp;
        }
        if (count < 0 || done < count) out += replacement;
        return out;
    }
    std::size_t pos = 0;
    long long done = 0;
    while (count < 0 || done < count) {
        const std::size_t found = s.find(old, pos);
        if (found == std::string_view::npos) break;
        out.append(s.substr(pos, found - pos));
        out.append(replacement);
        pos = found + old.size();
        ++done;
    }
    out.append(s.substr(pos));
    return out;
}

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep,
                               long long maxsplit, bool from_right) {
    std::vector<std::string> parts;
    if (sep) {
        if (sep->empty())
            fail(ErrorCode::kInvalidArgument, "chat template: split: empty separator");
        if (!from_right) {
            std::size_t pos = 0;
            while (maxsplit < 0 || static_cast<long long>(parts.size()) < maxsplit) {
                const std::size_t found = s.find(*sep, pos);
                if (found == std::string_view::npos) break;
                parts.emplace_back(s.substr(pos, found - pos));
                pos = found + sep->size();
            }
            parts.emplace_back(s.substr(pos));
            return parts;
        }
        std::size_t end = s.size();
        while (maxsplit < 0 || static_cast<long long>(parts.size()) < maxsplit) {
            if (end < sep->size()) break;
            const std::size_t found = s.rfind(*sep, end - sep->size());
            if (found == std::string_view::npos) break;
            parts.emplace_back(s.substr(found + sep->size(), end - found - sep->size()));
            end = found;
        }
        parts.emplace_back(s.substr(0, end));
        std::reverse(parts.begin(), parts.end());
        return parts;
    }
    // Whitespace runs; no empty strings.
    const auto cps = code_points(s);
    std::vector<std::pair<std::size_t, std::size_t>> words;  // [begin, end) in code points
    for (std::size_t i = 0; i < cps.size();) {
        while (i < cps.size() && is_space(cps[i])) ++i;
        if (i == cps.size()) break;
        const std::size_t begin = i;
        while (i < cps.size() && !is_space(cps[i])) ++i;
        words.emplace_back(begin, i);
    }
    const auto text_of = [&](std::size_t begin, std::size_t end) {
        return std::string(cps[begin].data(), cps[end - 1].data() + cps[end - 1].size());
    };
    const std::size_t limit = maxsplit < 0 ? words.size() : static_cast<std::size_t>(maxsplit);
    if (words.size() <= limit) {
        for (const auto& [begin, end] : words) parts.push_back(text_of(begin, end));
        return parts;
    }
    // Python keeps the unsplit remainder as it is, whitespace on its far side included.
    if (!from_right) {
        for (std::size_t w = 0; w < limit; ++w)
            parts.push_back(text_of(words[w].first, words[w].second));
        parts.push_back(text_of(words[limit].first, cps.size()));
        return parts;
    }
    const std::size_t first_kept = words.size() - limit;
    parts.push_back(text_of(0, words[first_kept - 1].second));
    for (std::size_t w = first_kept; w < words.size(); ++w)
        parts.push_back(text_of(words[w].first, words[w].second));
    return parts;
}

std::vector<std::string> splitlines(std::string_view s) {
    std::vector<std::string> lines;
    std::string current;
    const auto cps = code_points(s);
    for (std::size_t i = 0; i < cps.size(); ++i) {
        const std::string_view cp = cps[i];
        const bool boundary = cp == "\n" || cp == "\r" || cp == "\v" || cp == "\f" ||
                              cp == "\x1c" || cp == "\x1d" || cp == "\x1e" || cp == "\xC2\x85" ||
                              cp == "\xE2\x80\xA8" || cp == "\xE2\x80\xA9";
        if (!boundary) {
            current += cp;
            continue;
        }
        if (cp == "\r" && i + 1 < cps.size() && cps[i + 1] == "\n") ++i;
        lines.push_back(std::move(current));
        current.clear();
    }
    if (!current.empty()) lines.push_back(std::move(current));
    return lines;
}

std::string html_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (const char c : s) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&#34;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

}  // namespace llmserve::chat::text
