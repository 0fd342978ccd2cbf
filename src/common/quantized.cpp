// Dequantization of ggml's block types, written from the layouts GGUF files use (llama.cpp's
// ggml-common.h describes them): every block starts or ends with fp16 scales, then packed values.
#include <cstring>

#include "common/dtype.h"
#include "common/error.h"

namespace llmserve {
namespace {

float half_at(const std::byte* p) {
    std::uint16_t bits;
    std::memcpy(&bits, p, sizeof(bits));
    return f16_to_f32(bits);
}

const std::uint8_t* bytes_at(const std::byte* p) {
    return reinterpret_cast<const std::uint8_t*>(p);
}

// Q5_0 / Q5_1: 32 fifth bits (a little-endian u32: bit i for value i) before 16 bytes of nibbles.
std::uint32_t fifth_bits(const std::byte* p) {
    std::uint32_t bits;
    std::memcpy(&bits, p, sizeof(bits));
    return bits;
}

void dequantize_symmetric(DType type, const std::byte* block, float* out) {
    std::int8_t values[32];
    unpack_symmetric_block(type, block, values);
    const float d = half_at(block);
    for (int i = 0; i < 32; ++i) out[i] = d * static_cast<float>(values[i]);
}

void dequantize_with_minimums(DType type, const std::byte* block, float* out) {
    MinimumBlocks unpacked;
    unpack_minimum_blocks(type, block, unpacked);
    for (int s = 0; s < unpacked.count; ++s)
        for (int i = 0; i < 32; ++i)
            out[s * 32 + i] =
                unpacked.scale[s] * static_cast<float>(unpacked.values[s][i]) - unpacked.min[s];
}

// The 6-bit scale and min of sub-block j (0-7) of a Q4_K / Q5_K super-block, packed in 12 bytes:
// bytes 0-3 hold the scales of sub-blocks 0-3 and 4-7 their mins (low 6 bits); sub-blocks 4-7
// take their low 4 bits from bytes 8-11 and their high 2 bits from the top of bytes 0-7.
void scale_and_min(const std::uint8_t* scales, int j, int& scale, int& min) {
    if (j < 4) {
        scale = scales[j] & 63;
        min = scales[j + 4] & 63;
    } else {
        scale = (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4);
        min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

// Q6_K (210 bytes): 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8 scales (one
// per 16 values), fp16 d; x = d * scale * (q - 32). Per 128 values: low nibbles of bytes 0-31
// then 32-63, high nibbles of bytes 0-31 then 32-63, each with 2 bits of the high byte.
void dequantize_q6_k(const std::byte* block, float* out) {
    const std::uint8_t* low = bytes_at(block);
    const std::uint8_t* high = bytes_at(block + 128);
    const auto* scales = reinterpret_cast<const std::int8_t*>(block + 192);
    const float d = half_at(block + 208);
    for (int half = 0; half < 2; ++half) {
        for (int i = 0; i < 32; ++i) {
            const int s = i / 16;
            const int q0 = ((low[i] & 0x0f) | (((high[i] >> 0) & 3) << 4)) - 32;
            const int q1 = ((low[i + 32] & 0x0f) | (((high[i] >> 2) & 3) << 4)) - 32;
            const int q2 = ((low[i] >> 4) | (((high[i] >> 4) & 3) << 4)) - 32;
            const int q3 = ((low[i + 32] >> 4) | (((high[i] >> 6) & 3) << 4)) - 32;
            out[i] = d * static_cast<float>(scales[s]) * static_cast<float>(q0);
            out[i + 32] = d * static_cast<float>(scales[s + 2]) * static_cast<float>(q1);
            out[i + 64] = d * static_cast<float>(scales[s + 4]) * static_cast<float>(q2);
            out[i + 96] = d * static_cast<float>(scales[s + 6]) * static_cast<float>(q3);
        }
        low += 64;
        high += 32;
        scales += 8;
        out += 128;
    }
}

}  // namespace

// Q8_0 (34 bytes): fp16 d, 32 int8. Q4_0 (18): fp16 d, 16 bytes whose low nibbles are values
// 0-15 and high nibbles values 16-31, x = d * (n - 8). Q5_0 (22): fp16 d, the fifth bits, then
// nibbles as Q4_0's, x = d * (n - 16).
void unpack_symmetric_block(DType type, const std::byte* block, std::int8_t (&values)[32]) {
    if (type == DType::kQ8_0) {
        std::memcpy(values, block + 2, 32);
        return;
    }
    if (type != DType::kQ4_0 && type != DType::kQ5_0)
        fail(ErrorCode::kInternal, "unpack_symmetric_block: {} is not Q8_0, Q4_0 or Q5_0",
             to_string(type));
    const bool five_bits = type == DType::kQ5_0;
    const std::uint32_t high = five_bits ? fifth_bits(block + 2) : 0;
    const std::uint8_t* q = bytes_at(block + (five_bits ? 6 : 2));
    const int offset = five_bits ? 16 : 8;
    for (int i = 0; i < 16; ++i) {
        const int low = (q[i] & 0x0f) | static_cast<int>((high >> i) & 1) << 4;
        const int upper = (q[i] >> 4) | static_cast<int>((high >> (i + 16)) & 1) << 4;
        values[i] = static_cast<std::int8_t>(low - offset);
        values[i + 16] = static_cast<std::int8_t>(upper - offset);
    }
}

// Q5_1 (24 bytes): fp16 d, fp16 m, the fifth bits, nibbles as Q5_0's; x = d * n + m.
// Q4_K (144 bytes): fp16 d, fp16 dmin, 12 bytes of scales/mins, 128 bytes of nibbles. Per
// 64 values: the low nibbles of 32 bytes are sub-block 2c, the high nibbles sub-block 2c + 1;
// x = d * scale * q - dmin * min. Q5_K (176 bytes) adds 32 bytes of fifth bits before the
// nibbles: bit s of byte i for sub-block s.
void unpack_minimum_blocks(DType type, const std::byte* block, MinimumBlocks& out) {
    if (!has_block_minimums(type))
        fail(ErrorCode::kInternal, "unpack_minimum_blocks: {} is not Q5_1, Q4_K or Q5_K",
             to_string(type));
    if (type == DType::kQ5_1) {
        out.count = 1;
        out.scale[0] = half_at(block);
        out.min[0] = -half_at(block + 2);
        const std::uint32_t high = fifth_bits(block + 4);
        const std::uint8_t* q = bytes_at(block + 8);
        for (int i = 0; i < 16; ++i) {
            out.values[0][i] = static_cast<std::uint8_t>((q[i] & 0x0f) | ((high >> i) & 1) << 4);
            out.values[0][i + 16] =
                static_cast<std::uint8_t>((q[i] >> 4) | ((high >> (i + 16)) & 1) << 4);
        }
        return;
    }
    const bool five_bits = type == DType::kQ5_K;
    const float d = half_at(block);
    const float dmin = half_at(block + 2);
    const std::uint8_t* scales = bytes_at(block + 4);
    const std::uint8_t* high = five_bits ? bytes_at(block + 16) : nullptr;
    const std::uint8_t* q = bytes_at(block + (five_bits ? 48 : 16));
    out.count = 8;
    for (int s = 0; s < 8; ++s) {
        int scale, min;
        scale_and_min(scales, s, scale, min);
        out.scale[s] = d * static_cast<float>(scale);
        out.min[s] = dmin * static_cast<float>(min);
        const std::uint8_t* nibbles = q + (s / 2) * 32;
        for (int i = 0; i < 32; ++i) {
            int value = s % 2 == 0 ? nibbles[i] & 0x0f : nibbles[i] >> 4;
            if (high != nullptr) value |= ((high[i] >> s) & 1) << 4;
            out.values[s][i] = static_cast<std::uint8_t>(value);
        }
    }
}

void dequantize(DType type, const std::byte* src, std::size_t count, float* dst) {
    const std::size_t per_block = block_elements(type);
    if (!is_quantized(type) || count % per_block != 0)
        fail(ErrorCode::kInternal, "dequantize: {} values of {} are not whole blocks", count,
             to_string(type));
    const std::size_t blocks = count / per_block;
    const std::size_t stride = block_bytes(type);
    for (std::size_t b = 0; b < blocks; ++b) {
        const std::byte* block = src + b * stride;
        float* out = dst + b * per_block;
        switch (type) {
            case DType::kQ8_0:
            case DType::kQ4_0:
            case DType::kQ5_0:
                dequantize_symmetric(type, block, out);
                break;
            case DType::kQ5_1:
            case DType::kQ4_K:
            case DType::kQ5_K:
                dequantize_with_minimums(type, block, out);
                break;
            case DType::kQ6_K:
                dequantize_q6_k(block, out);
                break;
            default:
                break;
        }
    }
}

}  // namespace llmserve
