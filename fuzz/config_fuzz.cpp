// ModelConfig::parse and GenerationDefaults::parse on arbitrary bytes: every input parses or
// throws llmserve::Error; anything else escaping is a bug.
#include "common/error.h"
#include "model/config.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        const auto config = llmserve::model::ModelConfig::parse(text, "fuzz/config.json");
        // What a parsed config promises its users.
        if (config.n_head <= 0 || config.n_embd % config.n_head != 0 || config.n_inner <= 0 ||
            config.vocab_size <= 0 || config.n_positions <= 0 || config.n_layer <= 0) {
            std::abort();
        }
    } catch (const llmserve::Error&) {
    }
    try {
        llmserve::model::GenerationDefaults::parse(text, "fuzz/generation_config.json");
    } catch (const llmserve::Error&) {
    }
    return 0;
}
