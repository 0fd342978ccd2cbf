#include "engine/sampling/stop_matcher.h"

#include <algorithm>

#include "common/error.h"

namespace llmserve::engine {
namespace {

// Offset of the first byte that is not part of a well-formed UTF-8 character (no overlongs,
// surrogates or code points above U+10FFFF), or npos.
std::size_t first_invalid_utf8(std::string_view text) {
    std::size_t i = 0;
    while (i < text.size()) {
        const auto lead = static_cast<unsigned char>(text[i]);
        std::size_t length = 0;
        unsigned char low = 0x80;  // allowed range of the second byte
        unsigned char high = 0xbf;
        if (lead < 0x80) {
            length = 1;
        } else if (lead >= 0xc2 && lead <= 0xdf) {
            length = 2;
        } else if (lead >= 0xe0 && lead <= 0xef) {
            length = 3;
            if (lead == 0xe0) low = 0xa0;   // overlong
            if (lead == 0xed) high = 0x9f;  // surrogates
        } else if (lead >= 0xf0 && lead <= 0xf4) {
            length = 4;
            if (lead == 0xf0) low = 0x90;   // overlong
            if (lead == 0xf4) high = 0x8f;  // above U+10FFFF
        } else {
            return i;
        }
        if (i + length > text.size()) return i;
        for (std::size_t k = 1; k < length; ++k) {
            const auto byte = static_cast<unsigned char>(text[i + k]);
            const unsigned char min = k == 1 ? low : 0x80;
            const unsigned char max = k == 1 ? high : 0xbf;
            if (byte < min || byte > max) return i;
        }
        i += length;
    }
    return std::string_view::npos;
}

}  // namespace

void check_stop_strings(const std::vector<std::string>& stops) {
    if (stops.size() > kMaxStopStrings) {
        fail_param("stop", "stop may hold at most {} strings, got {}", kMaxStopStrings,
                   stops.size());
    }
    for (std::size_t i = 0; i < stops.size(); ++i) {
        const std::string& stop = stops[i];
        if (stop.empty() || stop.size() > kMaxStopBytes) {
            fail_param("stop", "stop[{}] must be 1 to {} bytes long, got {} bytes", i,
                       kMaxStopBytes, stop.size());
        }
        if (const std::size_t bad = first_invalid_utf8(stop); bad != std::string_view::npos) {
            fail_param("stop", "stop[{}] is not valid UTF-8 (byte {} = 0x{:02x})", i, bad,
                       static_cast<unsigned char>(stop[bad]));
        }
    }
}

StopMatcher::StopMatcher(std::vector<std::string> stops) {
    check_stop_strings(stops);
    patterns_.reserve(stops.size());
    for (std::string& stop : stops) {
        Pattern pattern{std::move(stop), {}, 0};
        const std::string& text = pattern.text;
        pattern.border.assign(text.size(), 0);
        for (std::size_t i = 1, length = 0; i < text.size(); ++i) {
            while (length > 0 && text[i] != text[length]) length = pattern.border[length - 1];
            if (text[i] == text[length]) ++length;
            pattern.border[i] = length;
        }
        patterns_.push_back(std::move(pattern));
    }
}

void StopMatcher::advance(char byte) {
    ++consumed_;
    for (std::size_t index = 0; index < patterns_.size(); ++index) {
        Pattern& pattern = patterns_[index];
        while (pattern.state > 0 && pattern.text[pattern.state] != byte) {
            pattern.state = pattern.border[pattern.state - 1];
        }
        if (pattern.text[pattern.state] == byte) ++pattern.state;
        if (pattern.state == pattern.text.size()) {
            const std::uint64_t start = consumed_ - pattern.text.size();
            // Earlier start wins; at the same start the one seen complete first is the shorter
            // (or, for identical stops, the lower index, as patterns are visited in order).
            if (!best_ || start < best_->start) best_ = Occurrence{start, index};
            pattern.state = pattern.border[pattern.state - 1];
        }
    }
}

std::uint64_t StopMatcher::earliest_partial_start() const {
    std::uint64_t earliest = consumed_;
    for (const Pattern& pattern : patterns_)
        earliest = std::min(earliest, consumed_ - pattern.state);
    return earliest;
}

StopMatch StopMatcher::take(std::uint64_t end, std::optional<std::size_t> matched_stop_index) {
    const std::size_t length = static_cast<std::size_t>(end - held_start_);
    StopMatch result{held_.substr(0, length), matched_stop_index};
    held_.erase(0, length);
    held_start_ = end;
    if (matched_stop_index) {
        matched_ = true;
        held_.clear();
    }
    return result;
}

StopMatch StopMatcher::push(std::string_view newly_final_text) {
    if (matched_) return {};
    if (patterns_.empty()) return {std::string(newly_final_text), std::nullopt};
    const std::size_t first_new = held_.size();
    held_.append(newly_final_text);
    for (std::size_t i = first_new; i < held_.size(); ++i) {
        advance(held_[i]);
        // A complete stop is final once no stop that started earlier is still open.
        if (best_ && earliest_partial_start() >= best_->start) {
            return take(best_->start, best_->stop_index);
        }
    }
    const std::uint64_t safe_end =
        best_ ? std::min(best_->start, earliest_partial_start()) : earliest_partial_start();
    return take(safe_end, std::nullopt);
}

StopMatch StopMatcher::finish() {
    if (matched_) return {};
    // No more text: open partial stops can no longer complete.
    if (best_) return take(best_->start, best_->stop_index);
    return take(consumed_, std::nullopt);
}

}  // namespace llmserve::engine
