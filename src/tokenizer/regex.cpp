#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "common/error.h"

namespace llmserve::tokenizer {
namespace {

// Unicode's White_Space property as a character-class body.
constexpr std::string_view kWhiteSpaceClass =
    "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

// Per-thread match data and JIT stack: find() runs once per piece, too often to allocate.
struct ThreadMatchState {
    pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
    pcre2_jit_stack* jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    pcre2_match_context* context = [this] {
        pcre2_match_context* made = pcre2_match_context_create(nullptr);
        if (made != nullptr && jit_stack != nullptr)
            pcre2_jit_stack_assign(made, nullptr, jit_stack);
        return made;
    }();

    ThreadMatchState() = default;
    ThreadMatchState(const ThreadMatchState&) = delete;
    ThreadMatchState& operator=(const ThreadMatchState&) = delete;
    ~ThreadMatchState() {
        pcre2_match_context_free(context);
        pcre2_jit_stack_free(jit_stack);
        pcre2_match_data_free(data);
    }
};

ThreadMatchState& thread_match_state() {
    thread_local ThreadMatchState state;
    return state;
}

}  // namespace

struct Regex::Compiled {
    pcre2_code* code = nullptr;
    ~Compiled() { pcre2_code_free(code); }
};

std::string rewrite_whitespace_classes(std::string_view pattern) {
    std::string out;
    out.reserve(pattern.size() + 64);
    bool in_class = false;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        const char c = pattern[i];
        if (c == '\\' && i + 1 < pattern.size()) {
            const char next = pattern[++i];
            if (next == 's') {
                if (in_class) {
                    out.append(kWhiteSpaceClass);
                } else {
                    out.append("[").append(kWhiteSpaceClass).append("]");
                }
            } else if (next == 'S' && !in_class) {
                out.append("[^").append(kWhiteSpaceClass).append("]");
            } else {
                out.push_back(c);
                out.push_back(next);
            }
            continue;
        }
        out.push_back(c);
        if (!in_class && c == '[') {
            in_class = true;
            // A ']' right after '[' or '[^' is a literal member, not the end of the class.
            if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
            if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);
        } else if (in_class && c == ']') {
            in_class = false;
        }
    }
    return out;
}

Regex::Regex(std::string_view pattern, std::string_view source) : pattern_(pattern) {
    if (pattern.find("\\S") != std::string_view::npos) {
        // \S inside a class has no White_Space spelling in a class body.
        bool in_class = false;
        for (std::size_t i = 0; i < pattern.size(); ++i) {
            if (pattern[i] == '\\') {
                if (in_class && i + 1 < pattern.size() && pattern[i + 1] == 'S') {
                    fail(ErrorCode::kUnsupported,
                         "{}: regex {} uses \\S inside a character class, which is not supported",
                         source, pattern);
                }
                ++i;
            } else if (pattern[i] == '[') {
                in_class = true;
            } else if (pattern[i] == ']') {
                in_class = false;
            }
        }
    }
    const std::string rewritten = rewrite_whitespace_classes(pattern);
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    auto compiled = std::make_shared<Compiled>();
    compiled->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
    if (compiled->code == nullptr) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(error_code, message, sizeof message);
        fail(ErrorCode::kUnsupported, "{}: regex {} is not supported: {} (at offset {})", source,
             pattern, reinterpret_cast<const char*>(message), error_offset);
    }
    // Without JIT (an unsupported CPU) PCRE2 interprets the pattern: slower, same matches.
    pcre2_jit_compile(compiled->code, PCRE2_JIT_COMPLETE);
    compiled_ = std::move(compiled);
}

std::optional<Match> Regex::find(std::string_view valid_utf8, std::size_t from) const {
    ThreadMatchState& state = thread_match_state();
    if (state.data == nullptr) fail(ErrorCode::kResourceExhausted, "regex match data: no memory");
    const int rc =
        pcre2_match(compiled_->code, reinterpret_cast<PCRE2_SPTR>(valid_utf8.data()),
                    valid_utf8.size(), from, PCRE2_NO_UTF_CHECK, state.data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) return std::nullopt;
    if (rc < 0) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(rc, message, sizeof message);
        fail(ErrorCode::kResourceExhausted, "regex {} failed on a {}-byte text: {}", pattern_,
             valid_utf8.size(), reinterpret_cast<const char*>(message));
    }
    // rc == 0 only says the one-pair ovector could not hold the groups; the match is in pair 0.
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
    return Match{ovector[0], ovector[1]};
}

}  // namespace llmserve::tokenizer
