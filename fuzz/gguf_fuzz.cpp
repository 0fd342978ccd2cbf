// parse_gguf on arbitrary bytes: every input parses or throws llmserve::Error; anything else
// escaping (another exception, a crash, a sanitizer report, a huge allocation) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "common/error.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> buffer(reinterpret_cast<const std::byte*>(data), size);
    try {
        const auto file = llmserve::io::parse_gguf(buffer, "fuzz.gguf");
        // What the parser promises about every tensor it returns.
        for (const auto& tensor : file.tensors) {
            const std::size_t row = static_cast<std::size_t>(tensor.shape.back());
            if (row % llmserve::block_elements(tensor.dtype) != 0) std::abort();
            if (!tensor.data.empty() &&
                (tensor.data.data() < buffer.data() ||
                 tensor.data.data() + tensor.data.size() > buffer.data() + buffer.size()))
                std::abort();
        }
        // The getters on whatever keys the input holds.
        for (const auto& [key, value] : file.metadata) {
            (void)value;
            try {
                (void)file.optional_number(key);
            } catch (const llmserve::Error&) {
            }
        }
    } catch (const llmserve::Error&) {
    }
    return 0;
}
