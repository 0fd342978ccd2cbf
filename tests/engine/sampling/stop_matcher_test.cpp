// StopMatcher: streamed output must equal a one-shot search for the earliest stop occurrence
// (ties at one position: the shortest stop, then the lowest index), whatever the split.
#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/sampling/stop_matcher.h"

namespace llmserve::engine {
namespace {

struct Outcome {
    std::string text;
    std::optional<std::size_t> stop_index;
    bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& out, const Outcome& outcome) {
    out << '"' << outcome.text << "\" stop=";
    if (outcome.stop_index) return out << *outcome.stop_index;
    return out << "none";
}

// The non-streaming definition.
Outcome one_shot(const std::string& text, const std::vector<std::string>& stops) {
    std::optional<std::size_t> best;
    std::size_t best_position = std::string::npos;
    for (std::size_t i = 0; i < stops.size(); ++i) {
        const std::size_t position = text.find(stops[i]);
        if (position == std::string::npos) continue;
        if (!best || position < best_position ||
            (position == best_position && stops[i].size() < stops[*best].size())) {
            best = i;
            best_position = position;
        }
    }
    if (!best) return {text, std::nullopt};
    return {text.substr(0, best_position), best};
}

// Feeds the pieces, then finish(); checks that nothing is emitted after a match.
Outcome streamed(const std::vector<std::string>& pieces, const std::vector<std::string>& stops,
                 std::vector<std::string>* emitted = nullptr) {
    StopMatcher matcher(stops);
    Outcome outcome;
    const auto collect = [&](const StopMatch& match) {
        if (emitted != nullptr) emitted->push_back(match.emit);
        EXPECT_FALSE(outcome.stop_index && !match.emit.empty()) << "text emitted after a match";
        outcome.text += match.emit;
        if (match.matched_stop_index) outcome.stop_index = match.matched_stop_index;
    };
    for (const std::string& piece : pieces) collect(matcher.push(piece));
    collect(matcher.finish());
    EXPECT_EQ(matcher.matched(), outcome.stop_index.has_value());
    return outcome;
}

TEST(StopMatcher, StopSpanningPiecesHoldsBackOnlyAPossiblePrefix) {
    std::vector<std::string> emitted;
    const Outcome outcome = streamed({"hel", "lo wo", "rld!", "more"}, {"world"}, &emitted);
    EXPECT_EQ(outcome, (Outcome{"hello ", 0}));
    ASSERT_GE(emitted.size(), 3u);
    EXPECT_EQ(emitted[0], "hel");
    EXPECT_EQ(emitted[1], "lo ");  // "wo" held back
    EXPECT_EQ(emitted[2], "");
}

TEST(StopMatcher, MatchAtVeryStart) {
    EXPECT_EQ(streamed({"ab", "c"}, {"ab"}), (Outcome{"", 0}));
    EXPECT_EQ(streamed({"a", "bc"}, {"x", "ab"}), (Outcome{"", 1}));
}

TEST(StopMatcher, EarliestStartWinsEvenIfItCompletesLater) {
    // "bcd" completes first, but "abcde" starts earlier: it must wait and then win.
    EXPECT_EQ(streamed({"ab", "cd", "e"}, {"bcd", "abcde"}), (Outcome{"", 1}));
    // "abcde" breaks off: "bcd" wins after all.
    EXPECT_EQ(streamed({"ab", "cd", "x"}, {"bcd", "abcde"}), (Outcome{"a", 0}));
    // The text ends while "abcde" is still open: finish() settles on "bcd".
    EXPECT_EQ(streamed({"xab", "cd"}, {"bcd", "abcde"}), (Outcome{"xa", 0}));
}

TEST(StopMatcher, SamePositionShortestWins) {
    EXPECT_EQ(streamed({"xabc"}, {"abc", "ab"}), (Outcome{"x", 1}));
    EXPECT_EQ(streamed({"x", "a", "b", "c"}, {"abc", "ab"}), (Outcome{"x", 1}));
    EXPECT_EQ(streamed({"xab"}, {"ab", "ab"}), (Outcome{"x", 0}));
}

TEST(StopMatcher, OverlappingSelfSimilarStop) {
    // KMP fallback: "aab" inside "aaab" starts at 1.
    EXPECT_EQ(streamed({"a", "a", "a", "b"}, {"aab"}), (Outcome{"a", 0}));
    EXPECT_EQ(streamed({"ab", "abab", "ac"}, {"ababac"}), (Outcome{"ab", 0}));
    EXPECT_EQ(streamed({"abab", "ac"}, {"ababac"}), (Outcome{"", 0}));
}

TEST(StopMatcher, MultiByteCharacters) {
    // "é" = C3 A9 and "è" = C3 A8 share the lead byte; pieces are whole characters.
    std::vector<std::string> emitted;
    EXPECT_EQ(streamed({"caf", "\xC3\xA8", "\xC3\xA9", "!"}, {"\xC3\xA9!"}, &emitted),
              (Outcome{"caf\xC3\xA8", 0}));
    EXPECT_EQ(emitted[1], "\xC3\xA8");  // è cannot start "é!": emitted at once
    EXPECT_EQ(emitted[2], "");          // é held back
    EXPECT_EQ(streamed({"日本", "語です"}, {"本語"}), (Outcome{"日", 0}));
    EXPECT_EQ(streamed({"👍🏽", "ok"}, {"🏽o"}), (Outcome{"👍", 0}));
    EXPECT_EQ(streamed({"日本"}, {"本語"}), (Outcome{"日本", std::nullopt}));
}

TEST(StopMatcher, NoStopsPassesTextThrough) {
    StopMatcher matcher({});
    EXPECT_EQ(matcher.push("abc").emit, "abc");
    EXPECT_EQ(matcher.finish().emit, "");
}

TEST(StopMatcher, FinishReleasesHeldText) {
    StopMatcher matcher({"end"});
    EXPECT_EQ(matcher.push("the en").emit, "the ");
    const StopMatch last = matcher.finish();
    EXPECT_EQ(last.emit, "en");
    EXPECT_FALSE(last.matched_stop_index);
}

// Splits `text` at random character boundaries (never inside a UTF-8 sequence).
std::vector<std::string> random_split(const std::string& text, std::mt19937& engine) {
    std::vector<std::string> pieces;
    std::string current;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const bool starts_character = (static_cast<unsigned char>(text[i]) & 0xC0) != 0x80;
        if (starts_character && !current.empty() && engine() % 3 == 0) {
            pieces.push_back(current);
            current.clear();
        }
        current += text[i];
    }
    if (!current.empty() || pieces.empty()) pieces.push_back(current);
    return pieces;
}

bool complete_utf8_characters(const std::string& piece) {
    if (piece.empty()) return true;
    if ((static_cast<unsigned char>(piece.front()) & 0xC0) == 0x80) return false;
    std::size_t i = piece.size();
    while (i > 0 && (static_cast<unsigned char>(piece[i - 1]) & 0xC0) == 0x80) --i;
    if (i == 0) return false;
    const auto lead = static_cast<unsigned char>(piece[i - 1]);
    const std::size_t length = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
    return piece.size() - (i - 1) == length;
}

TEST(StopMatcher, RandomSplitsAgreeWithOneShotSearch) {
    // A small alphabet with multi-byte characters so that stops occur, overlap and share prefixes.
    const std::vector<std::string> alphabet = {
        "a", "b", "c", "\xC3\xA9", "\xE6\x97\xA5", "\xF0\x9F\x91\x8D"};
    std::mt19937 engine(12345);
    const auto random_string = [&](std::size_t max_characters) {
        std::string s;
        const std::size_t length = 1 + engine() % max_characters;
        for (std::size_t i = 0; i < length; ++i) s += alphabet[engine() % alphabet.size()];
        return s;
    };
    int matched_cases = 0;
    for (int trial = 0; trial < 3000; ++trial) {
        std::vector<std::string> stops(1 + engine() % 4);
        for (std::string& stop : stops) stop = random_string(4);
        const std::string text = random_string(30);
        const Outcome expected = one_shot(text, stops);
        matched_cases += expected.stop_index.has_value();
        for (int split = 0; split < 3; ++split) {
            std::vector<std::string> emitted;
            const Outcome actual = streamed(random_split(text, engine), stops, &emitted);
            ASSERT_EQ(actual, expected) << "trial " << trial << " text " << text;
            for (const std::string& piece : emitted) {
                ASSERT_TRUE(complete_utf8_characters(piece)) << "trial " << trial;
            }
        }
    }
    EXPECT_GT(matched_cases, 1000);  // the generator exercises matches, not just pass-through
}

TEST(StopMatcher, RejectsInvalidStops) {
    const auto param_of = [](std::vector<std::string> stops) {
        try {
            StopMatcher matcher(std::move(stops));
        } catch (const Error& error) {
            return error.param();
        }
        return std::string("no error");
    };
    EXPECT_EQ(param_of({""}), "stop");
    EXPECT_EQ(param_of({std::string(kMaxStopBytes + 1, 'a')}), "stop");
    EXPECT_EQ(param_of(std::vector<std::string>(kMaxStopStrings + 1, "a")), "stop");
    EXPECT_EQ(param_of({"\xC3"}), "stop");          // truncated character
    EXPECT_EQ(param_of({"\xA9"}), "stop");          // lone continuation byte
    EXPECT_EQ(param_of({"\xC0\xAF"}), "stop");      // overlong
    EXPECT_EQ(param_of({"\xED\xA0\x80"}), "stop");  // surrogate
    EXPECT_EQ(param_of({std::string(kMaxStopBytes, 'a'), "\xF0\x9F\x91\x8D"}), "no error");
}

}  // namespace
}  // namespace llmserve::engine
