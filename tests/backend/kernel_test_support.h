// Helpers shared by the backend tests: random data, tensors over test-owned memory, and a loop
// over every kernel tier this CPU supports.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/packed_matrix.h"
#include "common/dtype.h"
#include "io/safetensors.h"

namespace llmserve::backend::cpu::testing {

inline std::vector<float> random_floats(std::size_t count, float low, float high, unsigned seed) {
    std::mt19937 engine(seed);
    std::uniform_real_distribution<float> uniform(low, high);
    std::vector<float> values(count);
    for (float& v : values) v = uniform(engine);
    return values;
}

// A [rows, cols] tensor viewing `bytes` (which must outlive it).
inline io::TensorView tensor_view(std::span<const std::byte> bytes, DType dtype, std::int64_t rows,
                                  std::int64_t cols) {
    io::TensorView view;
    view.name = "test.weight";
    view.dtype = dtype;
    view.shape = {rows, cols};
    view.data = bytes;
    view.file = "<test>";
    return view;
}

// `rows` rows of `cols` values of GGUF block type `type` with random bytes and a fixed, sane fp16
// scale per block (Q6_K keeps its scale last, the others first; Q5_1 / Q4_K / Q5_K also a min or
// dmin).
inline std::vector<std::byte> random_blocks(DType type, int rows, int cols, unsigned seed) {
    std::mt19937 rng(seed);
    const std::size_t block = block_bytes(type);
    const std::size_t blocks = static_cast<std::size_t>(rows) * cols / block_elements(type);
    std::vector<std::byte> bytes(blocks * block);
    for (auto& b : bytes) b = static_cast<std::byte>(rng() & 0xff);
    // llama.cpp's Q8_0 values lie in [-127, 127] (-128 is tested on its own).
    if (type == DType::kQ8_0)
        for (auto& b : bytes)
            if (b == std::byte{0x80}) b = std::byte{0x81};
    const std::uint16_t scale = f32_to_f16(0.01f + static_cast<float>(seed % 7) * 0.003f);
    for (std::size_t i = 0; i < blocks; ++i) {
        std::byte* start = bytes.data() + i * block;
        std::memcpy(type == DType::kQ6_K ? start + 208 : start, &scale, 2);
        if (has_block_minimums(type)) std::memcpy(start + 2, &scale, 2);
    }
    return bytes;
}

// Every tier this CPU supports, lowest first; each test runs its checks once per tier.
inline std::vector<Isa> tiers() {
    return supported_isas();
}

inline std::string tier_name(Isa isa) {
    return "isa " + std::string(to_string(isa));
}

// A block table of `blocks` distinct entries drawn in shuffled order from a pool of
// `blocks + spare` blocks, so that a kernel reading the wrong block reads someone else's data.
inline std::vector<int> scattered_blocks(int blocks, int spare, unsigned seed) {
    std::vector<int> pool(static_cast<std::size_t>(blocks + spare));
    for (int b = 0; b < blocks + spare; ++b) pool[b] = b;
    std::shuffle(pool.begin(), pool.end(), std::mt19937(seed));
    pool.resize(blocks);
    return pool;
}

// Attention shapes the kernels must handle: prefill tiles of several rows and decode rows (short
// and long contexts), head sizes that are not a multiple of the vector width, blocks that are not
// a multiple of the key chunk, a head too wide for the tiled kernels (their row-by-row path), and
// rows whose scores do not fit the row-by-row path's stack buffer (4096).
struct AttentionCase {
    int n_head, head_dim, block_tokens, first_position, rows;
};
inline std::vector<AttentionCase> attention_cases() {
    return {{3, 64, 16, 0, 4},   {2, 24, 5, 9, 3},    {4, 16, 32, 40, 4},   {1, 8, 16, 0, 1},
            {2, 64, 16, 130, 2}, {2, 64, 16, 130, 1}, {2, 64, 16, 300, 2},  {1, 260, 4, 6, 4},
            {3, 33, 7, 20, 1},   {2, 48, 16, 15, 4},  {1, 32, 16, 4500, 1}, {1, 40, 16, 4200, 2}};
}
inline std::string describe(Isa isa, const AttentionCase& c) {
    return tier_name(isa) + ", heads " + std::to_string(c.n_head) + " of " +
           std::to_string(c.head_dim) + ", blocks of " + std::to_string(c.block_tokens) + ", " +
           std::to_string(c.rows) + " rows from position " + std::to_string(c.first_position);
}

}  // namespace llmserve::backend::cpu::testing
