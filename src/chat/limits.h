// What one render may use: a hostile template (from an untrusted Hub repo) stops with an Error at
// the first limit it reaches instead of running unbounded.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llmserve::chat {

struct RenderLimits {
    std::size_t max_output_bytes = std::size_t{1} << 20;
    // Statements, expressions and loop iterations evaluated in one render (a real template
    // takes about 100 per message).
    std::uint64_t max_steps = 1'000'000;
    int max_call_depth = 100;  // nested macro calls
    // Bytes of strings and list/dict slots a render creates in total: bounds its memory.
    std::size_t max_allocated_bytes = std::size_t{256} << 20;
};

}  // namespace llmserve::chat
