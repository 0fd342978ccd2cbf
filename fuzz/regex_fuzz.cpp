// The regex compiler on arbitrary bytes, in both modes; its output must be a GBNF expression.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "grammar/regex.h"
#include "grammar_fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string pattern(reinterpret_cast<const char*>(data), size);
    for (const auto mode :
         {llmserve::grammar::RegexMode::kFullMatch, llmserve::grammar::RegexMode::kJsonString}) {
        std::string expression;
        try {
            expression = llmserve::grammar::regex_to_gbnf(pattern, mode);
        } catch (const llmserve::Error&) {
            continue;
        }
        llmserve::grammar::fuzz::exercise("root ::= " + expression + "\n", pattern.substr(0, 32));
    }
    return 0;
}
