// Hash for std::string-keyed unordered maps that can be searched with a std::string_view
// (C++20 heterogeneous lookup), so that lookups never allocate a temporary string.
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

namespace llmserve::tokenizer {

struct TransparentStringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace llmserve::tokenizer
