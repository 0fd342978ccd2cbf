// Feeds arbitrary bytes to the pytorch_model.bin reader: only llmserve::Error may escape, and
// ASan/UBSan must stay quiet. Seed it with the fixtures' .bin files (and their data.pkl).
#include "common/error.h"
#include "io/pytorch_checkpoint.h"

#include <cstddef>
#include <cstdint>
#include <span>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    try {
        const auto checkpoint = llmserve::io::read_pytorch_checkpoint(bytes, "fuzz.bin");
        for (const auto& tensor : checkpoint.tensors) {
            // Touch every byte a view claims, so that a view past the buffer trips ASan.
            volatile std::byte sink{};
            for (const std::byte b : tensor.data) sink = sink ^ b;
        }
    } catch (const llmserve::Error&) {
    }
    return 0;
}
