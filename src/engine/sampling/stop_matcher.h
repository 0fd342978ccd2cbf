// Streaming search for stop strings in generated text.
//
// Semantics (the same whatever the split of the text into pieces): the stop occurrence that
// starts earliest in the text wins; among occurrences starting at the same byte the shortest stop
// wins (it is complete first, so a stream never has to wait for a longer one to decide), and among
// identical stops the lowest index. The text before the winning occurrence is emitted; the stop
// itself and everything after it is not. Without a match everything is emitted by finish().
//
// Text is held back only while it could still be the start of a stop string: the longest suffix
// that is a proper prefix of some stop, or, once a stop is complete, while an earlier-starting
// stop could still complete. Matching is bytewise; because stops are valid UTF-8 and pieces are
// whole characters, matches and held-back boundaries always fall on character boundaries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampling/sampling_params.h"

namespace llmserve::engine {

// Throws kInvalidArgument (param "stop") unless there are at most kMaxStopStrings stops, each
// 1..kMaxStopBytes bytes of valid UTF-8.
void check_stop_strings(const std::vector<std::string>& stops);

struct StopMatch {
    std::string emit;                               // text safe to send to the client now
    std::optional<std::size_t> matched_stop_index;  // set once: the sequence must stop
};

class StopMatcher {
  public:
    explicit StopMatcher(std::vector<std::string> stops);  // validated by check_stop_strings

    // Feeds the next piece of final text. After a match has been reported, further text is
    // ignored (returns nothing).
    StopMatch push(std::string_view newly_final_text);
    // End of generation: decides a pending match and releases whatever was held back.
    StopMatch finish();

    bool matched() const { return matched_; }

  private:
    // One stop string with its KMP automaton: `state` is the length of the longest suffix of the
    // text so far that is a prefix of `text`.
    struct Pattern {
        std::string text;
        std::vector<std::size_t> border;  // border[i]: longest proper border of text[0..i]
        std::size_t state = 0;
    };
    struct Occurrence {
        std::uint64_t start;  // absolute byte offset in the whole text
        std::size_t stop_index;
    };

    void advance(char byte);
    // Earliest absolute offset where a still-incomplete stop could begin; consumed_ if none.
    std::uint64_t earliest_partial_start() const;
    StopMatch take(std::uint64_t end, std::optional<std::size_t> matched_stop_index);

    std::vector<Pattern> patterns_;
    std::string held_;  // received, not yet emitted; begins at offset held_start_
    std::uint64_t held_start_ = 0;
    std::uint64_t consumed_ = 0;      // bytes received so far
    std::optional<Occurrence> best_;  // winning complete stop so far, not yet final
    bool matched_ = false;
};

}  // namespace llmserve::engine
