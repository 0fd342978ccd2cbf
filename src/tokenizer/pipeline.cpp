#include "tokenizer/pipeline.h"

#include <utf8proc.h>

#include <cstdlib>

#include "common/error.h"
#include "tokenizer/llama3_scanner.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"

namespace llmserve::tokenizer {
namespace {

struct Range {
    std::size_t start;
    std::size_t end;
    bool is_match;
};

std::size_t char_length_at(std::string_view text, std::size_t pos) {
    return next_utf8_sequence(text, pos).length;
}

bool is_ascii(std::string_view text) {
    for (const char c : text)
        if (static_cast<unsigned char>(c) >= 0x80) return false;
    return true;
}

std::string unicode_normal_form(std::string_view text, int options) {
    if (is_ascii(text)) return std::string(text);  // every normal form of ASCII is itself
    utf8proc_uint8_t* mapped = nullptr;
    const utf8proc_ssize_t length =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                     static_cast<utf8proc_ssize_t>(text.size()), &mapped,
                     static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
    if (length < 0) {
        fail(ErrorCode::kInternal, "Unicode normalization failed: {}", utf8proc_errmsg(length));
    }
    std::string result(reinterpret_cast<const char*>(mapped), static_cast<std::size_t>(length));
    std::free(mapped);
    return result;
}

std::string replace_all(std::string_view text, const TextPattern& pattern,
                        std::string_view replacement) {
    std::string out;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const std::optional<Match> match = pattern.find(text, pos);
        if (!match) break;
        out.append(text.substr(pos, match->start - pos)).append(replacement);
        pos = match->end;
        if (match->end == match->start) {  // an empty match: keep the next character, move on
            if (pos >= text.size()) break;
            const std::size_t length = char_length_at(text, pos);
            out.append(text.substr(pos, length));
            pos += length;
        }
    }
    if (pos < text.size()) out.append(text.substr(pos));
    return out;
}

bool is_white_space_at(std::string_view text, std::size_t pos, std::size_t length) {
    return classify_code_point(decode_code_point(text, pos, length)) == CharClass::kSpace;
}

std::string strip_white_space(std::string_view text, bool left, bool right) {
    std::size_t begin = 0;
    std::size_t end = text.size();
    if (left) {
        while (begin < end) {
            const std::size_t length = char_length_at(text, begin);
            if (!is_white_space_at(text, begin, length)) break;
            begin += length;
        }
    }
    if (right) {
        while (end > begin) {
            std::size_t start = end - 1;
            while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80)
                --start;
            if (!is_white_space_at(text, start, end - start)) break;
            end = start;
        }
    }
    return std::string(text.substr(begin, end - begin));
}

// Hugging Face's NormalizedString::split: matches and the text between them, merged or dropped
// as `behavior` says.
std::vector<Range> apply_behavior(const std::vector<Range>& ranges, SplitBehavior behavior) {
    std::vector<Range> out;
    bool previous_match = false;
    switch (behavior) {
        case SplitBehavior::kIsolated:
        case SplitBehavior::kRemoved:
            return ranges;
        case SplitBehavior::kContiguous:
            for (const Range& range : ranges) {
                if (range.is_match == previous_match && !out.empty()) {
                    out.back().end = range.end;
                } else {
                    out.push_back({range.start, range.end, false});
                }
                previous_match = range.is_match;
            }
            return out;
        case SplitBehavior::kMergedWithPrevious:
            for (const Range& range : ranges) {
                if (range.is_match && !previous_match && !out.empty()) {
                    out.back().end = range.end;
                } else {
                    out.push_back({range.start, range.end, false});
                }
                previous_match = range.is_match;
            }
            return out;
        case SplitBehavior::kMergedWithNext:
            for (auto it = ranges.rbegin(); it != ranges.rend(); ++it) {
                if (it->is_match && !previous_match && !out.empty()) {
                    out.back().start = it->start;
                } else {
                    out.push_back({it->start, it->end, false});
                }
                previous_match = it->is_match;
            }
            return {out.rbegin(), out.rend()};
    }
    return out;
}

// Every occurrence of `pattern` as a match range and the text between as non-matches.
std::vector<Range> find_ranges(std::string_view text, const TextPattern& pattern) {
    std::vector<Range> ranges;
    std::size_t previous = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const std::optional<Match> match = pattern.find(text, pos);
        if (!match) break;
        if (match->start != previous) ranges.push_back({previous, match->start, false});
        ranges.push_back({match->start, match->end, true});
        previous = match->end;
        pos = match->end;
        if (match->end == match->start) {
            if (pos >= text.size()) break;
            pos += char_length_at(text, pos);
        }
    }
    if (previous != text.size()) ranges.push_back({previous, text.size(), false});
    return ranges;
}

// Each character for which `is_match` holds is its own match.
template <typename Predicate>
std::vector<Range> find_char_ranges(std::string_view text, Predicate is_match) {
    std::vector<Range> ranges;
    std::size_t previous = 0;
    for (std::size_t pos = 0; pos < text.size();) {
        const std::size_t length = char_length_at(text, pos);
        if (is_match(pos, length)) {
            if (pos != previous) ranges.push_back({previous, pos, false});
            ranges.push_back({pos, pos + length, true});
            previous = pos + length;
        }
        pos += length;
    }
    if (previous != text.size()) ranges.push_back({previous, text.size(), false});
    return ranges;
}

}  // namespace

std::optional<Match> TextPattern::find(std::string_view valid_utf8, std::size_t from) const {
    if (regex) return regex->find(valid_utf8, from);
    if (literal.empty()) return std::nullopt;
    const std::size_t start = valid_utf8.find(literal, from);
    if (start == std::string_view::npos) return std::nullopt;
    return Match{start, start + literal.size()};
}

std::string Normalizer::apply(std::string_view valid_utf8) const {
    std::string text(valid_utf8);
    for (const NormalizerStep& step : steps_) {
        switch (step.kind) {
            case NormalizerStep::Kind::kNfc:
                text = unicode_normal_form(text, UTF8PROC_COMPOSE);
                break;
            case NormalizerStep::Kind::kNfd:
                text = unicode_normal_form(text, UTF8PROC_DECOMPOSE);
                break;
            case NormalizerStep::Kind::kNfkc:
                text = unicode_normal_form(text, UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
                break;
            case NormalizerStep::Kind::kNfkd:
                text = unicode_normal_form(text, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
                break;
            case NormalizerStep::Kind::kPrepend:
                if (!text.empty()) text.insert(0, step.text);
                break;
            case NormalizerStep::Kind::kReplace:
                text = replace_all(text, step.pattern, step.text);
                break;
            case NormalizerStep::Kind::kStrip:
                text = strip_white_space(text, step.strip_left, step.strip_right);
                break;
        }
    }
    return text;
}

void PreTokenizer::run(std::string_view valid_utf8, bool at_origin, const PieceSink& sink) const {
    if (!valid_utf8.empty()) run_from(0, valid_utf8, at_origin, sink);
}

void PreTokenizer::run_from(std::size_t index, std::string_view text, bool at_origin,
                            const PieceSink& sink) const {
    if (index == steps_.size()) {
        sink(text);
        return;
    }
    const PreTokenizerStep& step = steps_[index];
    const auto next = [&](std::string_view piece, bool piece_at_origin) {
        if (!piece.empty()) run_from(index + 1, piece, piece_at_origin, sink);
    };
    const auto emit_ranges = [&](const std::vector<Range>& ranges, bool drop_matches) {
        for (const Range& range : ranges) {
            if (drop_matches && range.is_match) continue;
            next(text.substr(range.start, range.end - range.start), at_origin && range.start == 0);
        }
    };
    switch (step.kind) {
        case PreTokenizerStep::Kind::kGpt2Regex: {
            PieceScanner scanner(text);
            bool first = at_origin;
            for (std::string_view piece = scanner.next(); !piece.empty(); piece = scanner.next()) {
                next(piece, first);
                first = false;
            }
            return;
        }
        case PreTokenizerStep::Kind::kLlama3Regex: {
            Llama3Scanner scanner(text, step.digit_limit);
            bool first = at_origin;
            for (std::string_view piece = scanner.next(); !piece.empty(); piece = scanner.next()) {
                next(piece, first);
                first = false;
            }
            return;
        }
        case PreTokenizerStep::Kind::kSplit: {
            std::vector<Range> ranges = find_ranges(text, step.pattern);
            if (step.invert)
                for (Range& range : ranges) range.is_match = !range.is_match;
            emit_ranges(apply_behavior(ranges, step.behavior),
                        step.behavior == SplitBehavior::kRemoved);
            return;
        }
        case PreTokenizerStep::Kind::kPrefixSpace: {
            if (text.starts_with(' ')) {
                next(text, at_origin);
            } else {
                const std::string spaced = " " + std::string(text);
                next(spaced, at_origin);
            }
            return;
        }
        case PreTokenizerStep::Kind::kMetaspace: {
            std::string replaced = replace_all(text, TextPattern{" ", nullptr}, step.replacement);
            const bool prepend =
                !std::string_view(replaced).starts_with(step.replacement) &&
                (step.prepend_scheme == PreTokenizerStep::PrependScheme::kAlways ||
                 (step.prepend_scheme == PreTokenizerStep::PrependScheme::kFirst && at_origin));
            if (prepend) replaced.insert(0, step.replacement);
            if (!step.split) {
                next(replaced, at_origin);
                return;
            }
            const std::string_view view = replaced;
            const auto ranges = apply_behavior(
                find_char_ranges(view,
                                 [&](std::size_t pos, std::size_t length) {
                                     return view.substr(pos, length) == step.replacement;
                                 }),
                SplitBehavior::kMergedWithNext);
            for (const Range& range : ranges) {
                next(view.substr(range.start, range.end - range.start),
                     at_origin && range.start == 0);
            }
            return;
        }
        case PreTokenizerStep::Kind::kDigits: {
            const auto is_digit = [&](std::size_t pos, std::size_t length) {
                return classify_code_point(decode_code_point(text, pos, length)) ==
                       CharClass::kNumber;
            };
            emit_ranges(apply_behavior(find_char_ranges(text, is_digit),
                                       step.individual_digits ? SplitBehavior::kIsolated
                                                              : SplitBehavior::kContiguous),
                        false);
            return;
        }
    }
}

}  // namespace llmserve::tokenizer
