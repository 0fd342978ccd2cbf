// The JSON Schema compiler on arbitrary bytes: each input compiles to a grammar that then runs,
// or throws llmserve::Error (anything else escaping is a bug libFuzzer reports).
#include <cstddef>
#include <cstdint>
#include <string>

#include "grammar/json_schema.h"
#include "grammar_fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    std::string gbnf;
    try {
        gbnf = llmserve::grammar::json_schema_to_gbnf(text);
    } catch (const llmserve::Error&) {
        return 0;
    }
    llmserve::grammar::fuzz::exercise(gbnf, "{\"a\":[1,\"x\",null]}");
    return 0;
}
