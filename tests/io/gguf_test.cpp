// parse_gguf on files built byte by byte (one test per kind of damage, each checking the error
// code and that the message names the file and the key or tensor at fault), then on every
// vendored GGUF fixture, checked against its reference.json.
#include "io/gguf.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "gguf_builder.h"
#include "test_support.h"

namespace llmserve::io {
namespace {

using testing::expect_error;
using testing::GgufBuilder;

const std::string kSource = "synthetic.gguf";
constexpr std::uint32_t kF32 = 0, kQ4_1 = 3, kQ8_0 = 8, kQ4_K = 12;

GgufBuilder two_tensor_file() {
    GgufBuilder b;
    b.string("general.architecture", "llama");
    b.u32("llama.block_count", 2);
    b.tensor("token_embd.weight", {64, 3}, kQ8_0, 3 * 2 * 34);
    b.tensor("output_norm.weight", {64}, kF32, 64 * 4);
    return b;
}

void expect_corrupt(const GgufBuilder& builder, const std::vector<std::string>& fragments,
                    ErrorCode code = ErrorCode::kCorruptData) {
    const auto bytes = builder.build();
    std::vector<std::string> expected = fragments;
    expected.push_back(kSource);
    expect_error([&] { parse_gguf(bytes, kSource); }, code, expected);
}

TEST(Gguf, ParsesMetadataOfEveryTypeAndTensorInfos) {
    GgufBuilder b = two_tensor_file();
    b.i32("test.i32", -7);
    b.f32("test.f32", 0.5f);
    b.f64("test.f64", -2.25);
    b.boolean("test.bool", true);
    b.u64("test.u64", std::numeric_limits<std::uint64_t>::max());
    b.entry("test.u8", 0, GgufBuilder::raw(std::uint8_t{200}));
    b.entry("test.i16", 3, GgufBuilder::raw(std::int16_t{-300}));
    b.strings("tokenizer.ggml.tokens", {"a", "", "ccc"});
    b.i32s("tokenizer.ggml.token_type", {1, 3, 6});
    const auto bytes = b.build();
    const GgufFile file = parse_gguf(bytes, kSource);

    EXPECT_EQ(file.version, 3u);
    EXPECT_EQ(file.alignment, 32u);
    EXPECT_EQ(file.string("general.architecture"), "llama");
    EXPECT_EQ(file.integer("llama.block_count"), 2);
    EXPECT_EQ(file.integer("test.i32"), -7);
    EXPECT_EQ(file.number("test.f32"), 0.5);
    EXPECT_EQ(file.number("test.f64"), -2.25);
    EXPECT_EQ(file.number("test.i32"), -7.0);
    EXPECT_EQ(file.optional_bool("test.bool"), true);
    EXPECT_EQ(file.integer("test.u8"), 200);
    EXPECT_EQ(file.integer("test.i16"), -300);
    EXPECT_EQ(std::get<std::uint64_t>(file.find("test.u64")->value),
              std::numeric_limits<std::uint64_t>::max());
    EXPECT_EQ(file.strings("tokenizer.ggml.tokens"), (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_EQ(file.integers("tokenizer.ggml.token_type"), (std::vector<std::int64_t>{1, 3, 6}));
    EXPECT_EQ(file.optional_integer("absent.key"), std::nullopt);

    ASSERT_EQ(file.tensors.size(), 2u);
    const TensorView& embd = file.tensors[0];
    EXPECT_EQ(embd.name, "token_embd.weight");
    EXPECT_EQ(embd.dtype, DType::kQ8_0);
    EXPECT_EQ(embd.shape, (std::vector<std::int64_t>{3, 64}));  // reversed ne
    EXPECT_EQ(embd.data.size(), 3u * 2 * 34);
    const TensorView& norm = file.tensors[1];
    EXPECT_EQ(norm.shape, (std::vector<std::int64_t>{64}));
    EXPECT_EQ(norm.data.size(), 256u);
    // Data starts at an aligned offset; the builder fills each tensor with 0, 1, 2, ...
    const auto data_start = static_cast<std::size_t>(embd.data.data() - bytes.data());
    EXPECT_EQ(data_start % 32, 0u);
    EXPECT_EQ(norm.data.data() - embd.data.data(), 224);  // 204 bytes rounded up to 32
    EXPECT_EQ(static_cast<int>(norm.data[5]), 5);
}

TEST(Gguf, HonoursGeneralAlignment) {
    GgufBuilder b;
    b.alignment = 64;
    b.u32("general.alignment", 64);
    b.tensor("a", {8}, kF32, 32);
    b.tensor("b", {8}, kF32, 32);
    const auto bytes = b.build();
    const GgufFile file = parse_gguf(bytes, kSource);
    EXPECT_EQ(file.alignment, 64u);
    EXPECT_EQ((file.tensors[0].data.data() - bytes.data()) % 64, 0);
    EXPECT_EQ(file.tensors[1].data.data() - file.tensors[0].data.data(), 64);
}

TEST(Gguf, RefusesOldVersionsByName) {
    for (const std::uint32_t version : {1u, 2u}) {
        GgufBuilder b = two_tensor_file();
        b.version = version;
        expect_corrupt(b, {"GGUF version " + std::to_string(version), "only version 3"},
                       ErrorCode::kUnsupported);
    }
    GgufBuilder b = two_tensor_file();
    b.version = 0x03000000;
    expect_corrupt(b, {"version 50331648", "big-endian"});
}

TEST(Gguf, RefusesAnotherMagic) {
    auto bytes = two_tensor_file().build();
    bytes[0] = std::byte{'X'};
    expect_error([&] { parse_gguf(bytes, kSource); }, ErrorCode::kCorruptData,
                 {kSource, "not a GGUF file"});
}

TEST(Gguf, EveryTruncationIsAnErrorNamingTheFile) {
    const auto bytes = two_tensor_file().build();
    for (std::size_t size = 0; size < bytes.size(); ++size) {
        SCOPED_TRACE("truncated to " + std::to_string(size) + " bytes");
        const std::span<const std::byte> prefix(bytes.data(), size);
        expect_error([&] { parse_gguf(prefix, kSource); }, ErrorCode::kCorruptData, {kSource});
    }
}

TEST(Gguf, TensorPastTheEnd) {
    GgufBuilder b = two_tensor_file();
    auto bytes = b.build();
    bytes.resize(bytes.size() - 1);
    expect_error([&] { parse_gguf(bytes, kSource); }, ErrorCode::kCorruptData,
                 {kSource, "output_norm.weight", "run past its end"});
    b.tensors[1].offset = std::numeric_limits<std::uint64_t>::max() - 31;
    expect_corrupt(b, {"output_norm.weight", "run past its end"});
}

TEST(Gguf, MisalignedOffset) {
    GgufBuilder b = two_tensor_file();
    b.tensors[1].offset += 4;
    expect_corrupt(b, {"output_norm.weight", "offset 228", "alignment 32"});
}

TEST(Gguf, OverlappingTensors) {
    GgufBuilder b = two_tensor_file();
    b.tensors[1].offset = 192;
    expect_corrupt(b, {"token_embd.weight", "output_norm.weight", "overlap"});
}

TEST(Gguf, OverlapAcrossAnEmptyTensor) {
    GgufBuilder b;
    b.tensor("a", {64}, kF32, 256);
    b.tensor("empty", {0, 4}, kF32, 0);
    b.tensor("c", {64}, kF32, 256);
    b.tensors[2].offset = 128;  // inside "a", past the empty tensor at 256
    expect_corrupt(b, {"'a'", "'c'", "overlap"});
    b.tensors[2].offset = 256;
    const auto bytes = b.build();
    const GgufFile file = parse_gguf(bytes, kSource);
    EXPECT_TRUE(file.tensors[1].data.empty());
    EXPECT_EQ(file.tensors[1].shape, (std::vector<std::int64_t>{4, 0}));
}

TEST(Gguf, UnsupportedTensorTypeIsNamed) {
    GgufBuilder b = two_tensor_file();
    b.tensors[0].type = kQ4_1;
    expect_corrupt(b, {"token_embd.weight", "Q4_1", "supported: F32"}, ErrorCode::kUnsupported);
    b.tensors[0].type = 1000;
    expect_corrupt(b, {"token_embd.weight", "type 1000 (unknown)"}, ErrorCode::kUnsupported);
}

TEST(Gguf, RowsMustBeWholeBlocks) {
    GgufBuilder b = two_tensor_file();
    b.tensors[0].ne = {48, 3};
    expect_corrupt(b, {"token_embd.weight", "row length 48", "32-value q8_0 blocks"});
    b.tensors[0].ne = {64, 3};
    b.tensors[0].type = kQ4_K;
    expect_corrupt(b, {"token_embd.weight", "row length 64", "256-value q4_k blocks"});
}

TEST(Gguf, ShapeOverflowAndDimensionCount) {
    GgufBuilder b = two_tensor_file();
    b.tensors[1].ne = {std::uint64_t{1} << 40, std::uint64_t{1} << 40};
    expect_corrupt(b, {"output_norm.weight", "overflows"});
    b.tensors[1].ne = {1, 1, 1, 1, 1};
    expect_corrupt(b, {"output_norm.weight", "5 dimensions"});
    b.tensors[1].ne = {};
    expect_corrupt(b, {"output_norm.weight", "0 dimensions"});
}

TEST(Gguf, ShapeThatDisagreesWithTheDataIsCaught) {
    // A tensor whose shape claims more data than the file holds runs past the end.
    GgufBuilder b = two_tensor_file();
    b.tensors[1].ne = {64, 1000};
    expect_corrupt(b, {"output_norm.weight", "run past its end"});
}

TEST(Gguf, AbsurdCountsAllocateNothing) {
    GgufBuilder b = two_tensor_file();
    b.entry("huge.array", 9,
            GgufBuilder::raw(std::uint32_t{8}) + GgufBuilder::raw(std::uint64_t{1} << 60));
    expect_corrupt(b, {"huge.array", "array of 1152921504606846976 string values"});

    GgufBuilder s = two_tensor_file();
    s.entry("huge.string", 8, GgufBuilder::raw(std::uint64_t{1} << 62));
    expect_corrupt(s, {"huge.string", "truncated"});

    auto bytes = two_tensor_file().build();
    const std::uint64_t count = std::uint64_t{1} << 61;
    std::memcpy(bytes.data() + 8, &count, 8);  // the tensor count
    expect_error([&] { parse_gguf(bytes, kSource); }, ErrorCode::kCorruptData,
                 {kSource, "tensor count 2305843009213693952"});
    bytes = two_tensor_file().build();
    std::memcpy(bytes.data() + 16, &count, 8);  // the metadata count
    expect_error([&] { parse_gguf(bytes, kSource); }, ErrorCode::kCorruptData,
                 {kSource, "metadata count 2305843009213693952"});
}

TEST(Gguf, NestedArraysAreBounded) {
    GgufBuilder b = two_tensor_file();
    std::string value;
    for (int depth = 0; depth < 6; ++depth)
        value += GgufBuilder::raw(std::uint32_t{9}) + GgufBuilder::raw(std::uint64_t{1});
    value += GgufBuilder::raw(std::uint32_t{4}) + GgufBuilder::raw(std::uint64_t{1}) +
             GgufBuilder::raw(std::uint32_t{1});
    b.entry("deep", 9, value.substr(0));
    expect_corrupt(b, {"deep", "nested deeper"});
}

TEST(Gguf, DuplicatesAndUnknownValueTypes) {
    GgufBuilder keys = two_tensor_file();
    keys.u32("llama.block_count", 3);
    expect_corrupt(keys, {"llama.block_count", "appears twice"});

    GgufBuilder tensors = two_tensor_file();
    tensors.tensor("token_embd.weight", {64}, kF32, 256);
    expect_corrupt(tensors, {"token_embd.weight", "appears twice"});

    GgufBuilder type = two_tensor_file();
    type.entry("odd.type", 13, GgufBuilder::raw(std::uint32_t{0}));
    expect_corrupt(type, {"odd.type", "unknown value type 13"});

    GgufBuilder boolean = two_tensor_file();
    boolean.entry("odd.bool", 7, GgufBuilder::raw(std::uint8_t{2}));
    expect_corrupt(boolean, {"odd.bool", "bool value 2"});
}

TEST(Gguf, BadAlignmentValue) {
    for (const std::uint32_t alignment : {0u, 48u}) {
        GgufBuilder b = two_tensor_file();
        b.u32("general.alignment", alignment);
        expect_corrupt(b, {"general.alignment", std::to_string(alignment), "power of two"});
    }
}

TEST(Gguf, TypedGettersNameTheKeyAndTypes) {
    const auto bytes = two_tensor_file().build();
    const GgufFile file = parse_gguf(bytes, kSource);
    expect_error([&] { file.integer("general.architecture"); }, ErrorCode::kCorruptData,
                 {kSource, "general.architecture", "is string", "expected an integer"});
    expect_error([&] { file.string("llama.block_count"); }, ErrorCode::kCorruptData,
                 {"llama.block_count", "is u32", "expected a string"});
    expect_error([&] { file.integer("llama.missing"); }, ErrorCode::kNotFound,
                 {kSource, "llama.missing", "missing"});
    expect_error([&] { file.strings("llama.block_count"); }, ErrorCode::kCorruptData,
                 {"llama.block_count", "expected an array of strings"});
}

// Every vendored GGUF file parses; its tensors have the types reference.json lists.
TEST(Gguf, FixtureFilesMatchTheirReference) {
    const auto root = testing::fixtures_dir() / "gguf";
    int files = 0;
    for (const auto& dir : llmserve::testing::subdirectories(root)) {
        SCOPED_TRACE(dir.string());
        const auto reference = nlohmann::json::parse(testing::read_text(dir / "reference.json"));
        const GgufMapped mapped = open_gguf(dir / "model.gguf");
        const GgufFile& file = mapped.gguf;
        EXPECT_EQ(file.string("general.architecture"), reference.at("architecture"));
        EXPECT_EQ(file.alignment, reference.at("alignment").get<std::uint64_t>());
        const auto& types = reference.at("tensor_type_of");
        EXPECT_EQ(file.tensors.size(), types.size());
        for (const TensorView& t : file.tensors) {
            std::string type(to_string(t.dtype));
            for (char& ch : type) ch = static_cast<char>(std::toupper(ch));
            EXPECT_EQ(type, types.at(t.name).get<std::string>()) << t.name;
        }
        ++files;
    }
    EXPECT_GT(files, 0) << "no GGUF folders under " << root;
}

// Every tensor type against gguf-py's own dequantization (tests/fixtures/gguf-blocks: random
// blocks with zero, subnormal and negative scales), bit for bit: each value is one or two float32
// roundings of exact products, so any order of the arithmetic gives the same bits. The folder is
// this suite's own data, not a parity fixture, so it is read from the vendored copy.
TEST(Gguf, DequantizesEveryTypeAsGgufPyDoes) {
    const auto dir = llmserve::testing::source_dir() / "tests" / "fixtures" / "gguf-blocks";
    const auto reference = nlohmann::json::parse(testing::read_text(dir / "reference.json"));
    const GgufMapped mapped = open_gguf(dir / "model.gguf");
    ASSERT_FALSE(reference.at("tensors").empty());
    for (const auto& expected : reference.at("tensors")) {
        const auto name = expected.at("name").get<std::string>();
        SCOPED_TRACE("tensor " + name);
        const auto it = std::find_if(mapped.gguf.tensors.begin(), mapped.gguf.tensors.end(),
                                     [&](const TensorView& t) { return t.name == name; });
        ASSERT_NE(it, mapped.gguf.tensors.end());
        std::string type(to_string(it->dtype));
        for (char& ch : type) ch = static_cast<char>(std::toupper(ch));
        EXPECT_EQ(type, expected.at("type").get<std::string>());
        EXPECT_EQ(it->shape, expected.at("shape").get<std::vector<std::int64_t>>());
        const std::string values =
            testing::read_text(dir / expected.at("values_file").get<std::string>());
        const auto count = static_cast<std::size_t>(it->numel());
        ASSERT_EQ(values.size(), count * sizeof(float));
        std::vector<float> got(count);
        convert_to_f32(it->dtype, it->data.data(), count, got.data());
        for (std::size_t i = 0; i < count; ++i) {
            float want;
            std::memcpy(&want, values.data() + i * sizeof(float), sizeof(float));
            ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i]), std::bit_cast<std::uint32_t>(want))
                << "value " << i << ": got " << got[i] << ", gguf-py " << want;
        }
    }
}

// Dequantization of the 32-value types against the formulas, on hand-made blocks.
TEST(Gguf, DequantizesQ8_0AndQ4_0Blocks) {
    std::vector<std::byte> q8(34);
    const std::uint16_t half_quarter = 0x3400;  // 0.25
    std::memcpy(q8.data(), &half_quarter, 2);
    for (int i = 0; i < 32; ++i)
        q8[2 + i] = static_cast<std::byte>(static_cast<std::int8_t>(i - 16));
    std::vector<float> out(32);
    convert_to_f32(DType::kQ8_0, q8.data(), 32, out.data());
    for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], 0.25f * static_cast<float>(i - 16)) << i;

    std::vector<std::byte> q4(18);
    std::memcpy(q4.data(), &half_quarter, 2);
    for (int i = 0; i < 16; ++i) q4[2 + i] = static_cast<std::byte>(i | ((15 - i) << 4));
    convert_to_f32(DType::kQ4_0, q4.data(), 32, out.data());
    for (int i = 0; i < 16; ++i) {
        EXPECT_EQ(out[i], 0.25f * static_cast<float>(i - 8)) << i;
        EXPECT_EQ(out[i + 16], 0.25f * static_cast<float>(7 - i)) << i;
    }
}

// Q5_0 and Q5_1 on hand-made blocks: value i takes its fifth bit from bit i of the little-endian
// u32 before the nibbles (values 0-15 in the low nibbles, 16-31 in the high ones).
TEST(Gguf, DequantizesQ5_0AndQ5_1Blocks) {
    const std::uint16_t half_quarter = 0x3400, half_minus_three = 0xc200;  // 0.25, -3
    // Value i is n = 31 - i: nibble (31 - i) & 15, fifth bit set for i < 16.
    std::uint8_t nibbles[16];
    for (int i = 0; i < 16; ++i)
        nibbles[i] = static_cast<std::uint8_t>(((31 - i) & 15) | (((15 - i) & 15) << 4));
    const std::uint32_t fifth = 0x0000ffffu;
    std::vector<float> out(32);

    std::vector<std::byte> q5_0(22);
    std::memcpy(q5_0.data(), &half_quarter, 2);
    std::memcpy(q5_0.data() + 2, &fifth, 4);
    std::memcpy(q5_0.data() + 6, nibbles, 16);
    convert_to_f32(DType::kQ5_0, q5_0.data(), 32, out.data());
    for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], 0.25f * static_cast<float>(15 - i)) << i;

    std::vector<std::byte> q5_1(24);
    std::memcpy(q5_1.data(), &half_quarter, 2);
    std::memcpy(q5_1.data() + 2, &half_minus_three, 2);
    std::memcpy(q5_1.data() + 4, &fifth, 4);
    std::memcpy(q5_1.data() + 8, nibbles, 16);
    convert_to_f32(DType::kQ5_1, q5_1.data(), 32, out.data());
    for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], 0.25f * static_cast<float>(31 - i) - 3.0f) << i;
}

}  // namespace
}  // namespace llmserve::io
