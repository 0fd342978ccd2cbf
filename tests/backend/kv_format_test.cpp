// The f16 KV cache: every tier narrows like the scalar reference, attention over an f16 cache
// equals attention over an f32 cache holding the same (rounded) values, and the backend stores
// what attention reads.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/packed_matrix.h"
#include "common/dtype.h"
#include "common/error.h"
#include "tests/backend/kernel_test_support.h"

namespace llmserve::backend::cpu {
namespace {

using namespace testing;

TEST(KvFormat, NamesParseAndSizes) {
    EXPECT_EQ(parse_kv_format("f32"), KvFormat::kF32);
    EXPECT_EQ(parse_kv_format("f16"), KvFormat::kF16);
    EXPECT_EQ(to_string(KvFormat::kF16), "f16");
    EXPECT_EQ(element_bytes(KvFormat::kF32), 4u);
    EXPECT_EQ(element_bytes(KvFormat::kF16), 2u);
    try {
        parse_kv_format("bf16");
        ADD_FAILURE() << "bf16 accepted";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(error.what()).find("bf16"), std::string::npos) << error.what();
    }
}

// Every tier's bulk narrowing gives the scalar reference's bits (ties to even, subnormals,
// overflow to infinity), at every length (vector bodies and tails).
TEST(KvFormat, BulkNarrowingMatchesTheScalarReference) {
    std::vector<float> values = random_floats(1000, -70000.0f, 70000.0f, 5);
    const auto small = random_floats(1000, -1e-4f, 1e-4f, 6);  // subnormal halves
    values.insert(values.end(), small.begin(), small.end());
    for (std::uint32_t bits = 0; bits < 0x7c00; bits += 37) {  // exact halves and midpoints
        const float value = f16_to_f32(static_cast<std::uint16_t>(bits));
        const float next = f16_to_f32(static_cast<std::uint16_t>(bits + 1));
        values.push_back(value);
        values.push_back(-static_cast<float>((static_cast<double>(value) + next) / 2.0));
    }
    values.push_back(std::numeric_limits<float>::infinity());
    values.push_back(65519.0f);
    values.push_back(65520.0f);
    for (Isa isa : tiers()) {
        SCOPED_TRACE(tier_name(isa));
        for (std::size_t count : {values.size(), std::size_t{1}, std::size_t{7}, std::size_t{17}}) {
            std::vector<std::uint16_t> out(count + 1, 0xabcd);
            kernel_table(isa).f32_to_f16(values.data(), count, out.data());
            for (std::size_t i = 0; i < count; ++i)
                ASSERT_EQ(out[i], f32_to_f16(values[i])) << "value " << values[i];
            ASSERT_EQ(out[count], 0xabcd) << "wrote past " << count << " elements";
        }
    }
}

// The cache of one sequence in the kernels' layout, in f16 and, for reference, in f32 holding
// the same rounded values; blocks scattered over the pool.
struct HalfKv {
    std::vector<std::uint16_t> half_pool;
    std::vector<float> float_pool;
    std::vector<int> table;
    std::size_t block_stride = 0;
};

HalfKv make_half_kv(int n_embd, int block_tokens, int length, unsigned seed) {
    HalfKv kv;
    kv.block_stride = static_cast<std::size_t>(2) * block_tokens * n_embd;
    const int blocks = (length + block_tokens - 1) / block_tokens;
    kv.table = scattered_blocks(blocks, 1, seed);
    const std::size_t pool = static_cast<std::size_t>(blocks + 1) * kv.block_stride;
    kv.half_pool.assign(pool, 0x7e00);  // NaN where nothing was written
    kv.float_pool.assign(pool, std::nanf(""));
    const auto keys = random_floats(static_cast<std::size_t>(length) * n_embd, -2.0f, 2.0f, seed);
    const auto values = random_floats(keys.size(), -2.0f, 2.0f, seed + 1);
    for (int t = 0; t < length; ++t) {
        const std::size_t block = kv.table[t / block_tokens] * kv.block_stride;
        for (int c = 0; c < n_embd; ++c) {
            const std::size_t key_at =
                block + static_cast<std::size_t>(c) * block_tokens + t % block_tokens;
            const std::size_t value_at = block + static_cast<std::size_t>(block_tokens) * n_embd +
                                         static_cast<std::size_t>(t % block_tokens) * n_embd + c;
            const std::size_t logical = static_cast<std::size_t>(t) * n_embd + c;
            kv.half_pool[key_at] = f32_to_f16(keys[logical]);
            kv.half_pool[value_at] = f32_to_f16(values[logical]);
            kv.float_pool[key_at] = f16_to_f32(kv.half_pool[key_at]);
            kv.float_pool[value_at] = f16_to_f32(kv.half_pool[value_at]);
        }
    }
    return kv;
}

TEST(KvFormat, AttentionOverAHalfCacheEqualsAttentionOverItsValuesInF32) {
    for (Isa isa : tiers())
        for (const AttentionCase& c : attention_cases()) {
            SCOPED_TRACE(describe(isa, c));
            const int n_embd = c.n_head * c.head_dim;
            const HalfKv kv = make_half_kv(n_embd, c.block_tokens, c.first_position + c.rows, 31);
            const auto qkv =
                random_floats(static_cast<std::size_t>(c.rows) * 3 * n_embd, -1.0f, 1.0f, 32);
            std::vector<int> positions(c.rows);
            for (int i = 0; i < c.rows; ++i) positions[i] = c.first_position + i;
            const std::size_t out_size = static_cast<std::size_t>(c.rows) * n_embd;
            std::vector<float> from_half(out_size, 55.0f), from_float(out_size, 66.0f);
            AttentionArgs args{qkv.data(),
                               3 * n_embd,
                               nullptr,
                               n_embd,
                               positions.data(),
                               nullptr,
                               kv.block_stride,
                               c.block_tokens,
                               n_embd,
                               c.head_dim,
                               1.0f / std::sqrt(static_cast<float>(c.head_dim))};
            for (int head = 0; head < c.n_head; ++head) {
                const AttentionTile tile{0, c.rows, head, kv.table.data()};
                args.out = from_half.data();
                args.kv_blocks = kv.half_pool.data();
                args.kv_format = KvFormat::kF16;
                kernel_table(isa).attention(args, tile);
                args.out = from_float.data();
                args.kv_blocks = kv.float_pool.data();
                args.kv_format = KvFormat::kF32;
                kernel_table(isa).attention(args, tile);
            }
            for (std::size_t i = 0; i < out_size; ++i)
                ASSERT_NEAR(from_half[i], from_float[i], 1e-6f * (1.0f + std::abs(from_float[i])))
                    << "output " << i;
        }
}

// Through the backend: rows written into an f16 cache and attended to give what an f32 cache
// gives when the keys and values are first rounded to f16. Two steps (a prefill chunk, then one
// decode row) so that the second reads what the first stored.
TEST(KvFormat, BackendStoresRoundedKeysAndValuesAndAttendsToThem) {
    constexpr int kHeads = 4, kHeadDim = 32, kEmbd = kHeads * kHeadDim, kBlockTokens = 16;
    for (Isa isa : tiers()) {
        SCOPED_TRACE(tier_name(isa));
        auto backend = make_cpu_backend(2, isa);
        auto half_cache = backend->allocate_kv(1, 4, kBlockTokens, kEmbd, KvFormat::kF16);
        auto float_cache = backend->allocate_kv(1, 4, kBlockTokens, kEmbd, KvFormat::kF32);
        EXPECT_EQ(half_cache->bytes() * 2, float_cache->bytes());
        const std::vector<int> table = {2, 0, 3};
        const std::vector<std::span<const int>> tables = {table};
        for (const int rows : {21, 1}) {
            const int first = rows == 21 ? 0 : 21;
            auto qkv = random_floats(static_cast<std::size_t>(rows) * 3 * kEmbd, -1.5f, 1.5f,
                                     40 + static_cast<unsigned>(rows));
            auto rounded = qkv;  // keys and values as f16 keeps them; queries untouched
            for (int r = 0; r < rows; ++r)
                for (int c = kEmbd; c < 3 * kEmbd; ++c) {
                    float& x = rounded[static_cast<std::size_t>(r) * 3 * kEmbd + c];
                    x = f16_to_f32(f32_to_f16(x));
                }
            std::vector<int> positions(rows), sequence(rows, 0);
            for (int r = 0; r < rows; ++r) positions[r] = first + r;
            const AttentionBatch batch{positions, sequence, tables, kBlockTokens};
            const AttentionParams params{
                .n_head = kHeads, .n_kv_head = kHeads, .head_dim = kHeadDim, .scale = 0.25f};
            auto run = [&](std::vector<float>& input, KvStorage& cache) {
                auto in = backend->allocate(input.size());
                std::memcpy(in->data(), input.data(), input.size() * sizeof(float));
                auto out = backend->allocate(static_cast<std::size_t>(rows) * kEmbd);
                backend->attention({in->data(), rows, 3 * kEmbd}, batch, cache, 0, params,
                                   {out->data(), rows, kEmbd});
                return std::vector<float>(out->data(), out->data() + out->size());
            };
            const auto from_half = run(qkv, *half_cache);
            const auto from_float = run(rounded, *float_cache);
            for (std::size_t i = 0; i < from_half.size(); ++i)
                ASSERT_NEAR(from_half[i], from_float[i], 1e-6f * (1.0f + std::abs(from_float[i])))
                    << rows << " rows, output " << i;
        }
    }
}

}  // namespace
}  // namespace llmserve::backend::cpu
