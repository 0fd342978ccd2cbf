// parse_safetensors on arbitrary bytes: every input parses or throws llmserve::Error; anything
// else escaping (another exception, a crash, a sanitizer report) is a bug.
#include "common/error.h"
#include "io/safetensors.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> buffer(reinterpret_cast<const std::byte*>(data), size);
    try {
        const auto tensors = llmserve::io::parse_safetensors(buffer, "fuzz.safetensors");
        // What the parser promises about every tensor it returns.
        for (const auto& tensor : tensors) {
            const auto bytes = llmserve::io::tensor_byte_count(tensor.shape, tensor.dtype);
            if (!bytes || *bytes != tensor.data.size()) std::abort();
            if (!tensor.data.empty() &&
                (tensor.data.data() < buffer.data() ||
                 tensor.data.data() + tensor.data.size() > buffer.data() + buffer.size())) {
                std::abort();
            }
        }
    } catch (const llmserve::Error&) {
    }
    return 0;
}
