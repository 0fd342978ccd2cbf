// The GBNF parser on arbitrary bytes: the first line-feed-free 64 bytes after a NUL (if any)
// probe the matcher; the rest is the grammar.
#include <cstddef>
#include <cstdint>
#include <string>

#include "grammar_fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const auto split = text.find('\0');
    llmserve::grammar::fuzz::exercise(text.substr(0, split),
                                      split == std::string::npos ? "" : text.substr(split + 1, 64));
    return 0;
}
