// Element types of stored weights and the conversions the kernels need.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace llmserve {

// Floats, and the block-quantized types of GGUF files (ggml's layouts, see common/quantized.h):
// a block of block_elements(t) consecutive values of a row takes block_bytes(t) bytes.
enum class DType { kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ5_0, kQ5_1, kQ4_K, kQ5_K, kQ6_K };

constexpr bool is_quantized(DType t) {
    return t != DType::kF32 && t != DType::kF16 && t != DType::kBF16;
}

// Values per block: 1 for the float types.
constexpr std::size_t block_elements(DType t) {
    switch (t) {
        case DType::kQ8_0:
        case DType::kQ4_0:
        case DType::kQ5_0:
        case DType::kQ5_1:
            return 32;
        case DType::kQ4_K:
        case DType::kQ5_K:
        case DType::kQ6_K:
            return 256;
        default:
            return 1;
    }
}

constexpr std::size_t block_bytes(DType t) {
    switch (t) {
        case DType::kF32:
            return 4;
        case DType::kF16:
        case DType::kBF16:
            return 2;
        case DType::kQ8_0:
            return 34;
        case DType::kQ4_0:
            return 18;
        case DType::kQ5_0:
            return 22;
        case DType::kQ5_1:
            return 24;
        case DType::kQ4_K:
            return 144;
        case DType::kQ5_K:
            return 176;
        case DType::kQ6_K:
            return 210;
    }
    return 0;
}

// Bytes of one element of a float type (quantized types have no per-element size: use
// block_bytes).
constexpr std::size_t dtype_size(DType t) {
    return t == DType::kF32 ? 4 : 2;
}

// Bytes of `count` values of `t`; `count` must be a multiple of block_elements(t).
constexpr std::size_t row_bytes(DType t, std::size_t count) {
    return count / block_elements(t) * block_bytes(t);
}

constexpr std::string_view to_string(DType t) {
    switch (t) {
        case DType::kF32:
            return "f32";
        case DType::kF16:
            return "f16";
        case DType::kBF16:
            return "bf16";
        case DType::kQ8_0:
            return "q8_0";
        case DType::kQ4_0:
            return "q4_0";
        case DType::kQ5_0:
            return "q5_0";
        case DType::kQ5_1:
            return "q5_1";
        case DType::kQ4_K:
            return "q4_k";
        case DType::kQ5_K:
            return "q5_k";
        case DType::kQ6_K:
            return "q6_k";
    }
    return "?";
}

// Dequantizes `count` values (a multiple of block_elements(type)) of a quantized type, as
// ggml defines them (common/quantized.cpp).
void dequantize(DType type, const std::byte* src, std::size_t count, float* dst);

// The integer values of one Q8_0, Q4_0 or Q5_0 block: x[i] = d * values[i], d the fp16 that
// starts the block (values in [-127, 127], [-8, 7] or [-16, 15]; a file may hold -128 in Q8_0).
void unpack_symmetric_block(DType type, const std::byte* block, std::int8_t (&values)[32]);

// Types whose 32-value (sub-)blocks hold unsigned values with a scale and a minimum: Q5_1 (one
// per block), Q4_K and Q5_K (eight per super-block).
constexpr bool has_block_minimums(DType t) {
    return t == DType::kQ5_1 || t == DType::kQ4_K || t == DType::kQ5_K;
}

// One block of such a type as `count` sub-blocks of 32 values: value i of sub-block s is
// scale[s] * values[s][i] - min[s] (values in [0, 15] or [0, 31]), exactly as dequantize()
// computes it. Q5_1's scale and min are its fp16 d and -m; a K-quant's are exact products of the
// block's fp16 d / dmin and 6-bit factors.
struct MinimumBlocks {
    int count;
    float scale[8];
    float min[8];
    std::uint8_t values[8][32];
};
void unpack_minimum_blocks(DType type, const std::byte* block, MinimumBlocks& out);

// IEEE half -> float, exact for every input (subnormals, inf, nan included).
inline float f16_to_f32(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t exponent = (h >> 10) & 0x1fu;
    std::uint32_t mantissa = h & 0x3ffu;
    std::uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {  // subnormal: renormalise
        exponent = 113;
        while ((mantissa & 0x400u) == 0) {
            mantissa <<= 1;
            --exponent;
        }
        bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
    }
    return std::bit_cast<float>(bits);
}

inline float bf16_to_f32(std::uint16_t b) {
    return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

// Converts `count` elements of `type` at `src` (any alignment) to float; for a quantized type
// `count` must be a multiple of block_elements(type).
inline void convert_to_f32(DType type, const std::byte* src, std::size_t count, float* dst) {
    if (count == 0) return;  // an empty tensor's pointers may be null
    if (is_quantized(type)) {
        dequantize(type, src, count, dst);
        return;
    }
    if (type == DType::kF32) {
        std::memcpy(dst, src, count * sizeof(float));
        return;
    }
    for (std::size_t i = 0; i < count; ++i) {
        std::uint16_t v;
        std::memcpy(&v, src + 2 * i, 2);
        dst[i] = type == DType::kF16 ? f16_to_f32(v) : bf16_to_f32(v);
    }
}

}  // namespace llmserve
