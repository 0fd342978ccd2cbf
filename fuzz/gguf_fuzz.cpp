// parse_gguf on arbitrary bytes: every input parses or throws llmserve::Error; anything else
// escaping (another exception, a crash, a sanitizer report, a huge allocation) is a bug. The
// first values of every tensor are also dequantized: block types decode untrusted bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

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
            const std::size_t per_block = llmserve::block_elements(tensor.dtype);
            const std::size_t count =
                std::min<std::size_t>(static_cast<std::size_t>(tensor.numel()), 4096) / per_block *
                per_block;
            if (llmserve::row_bytes(tensor.dtype, count) > tensor.data.size()) std::abort();
            std::vector<float> values(count);
            llmserve::convert_to_f32(tensor.dtype, tensor.data.data(), count, values.data());
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
