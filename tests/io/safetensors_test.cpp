// parse_safetensors on synthetic buffers: what a valid header yields, and one test per kind of
// damage, each checking the error code and that the message names the file and tensor/field.
#include "io/safetensors.h"

#include "test_support.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>

namespace llmserve::io {
namespace {

using testing::expect_error;
using testing::make_safetensors;

const std::string kSource = "synthetic.safetensors";

std::vector<TensorView> parse(std::string_view header, std::size_t data_bytes) {
    const auto buffer = make_safetensors(header, data_bytes);
    // Views point into `buffer`; callers here only look at shapes, names and offsets.
    auto tensors = parse_safetensors(buffer, kSource);
    for (auto& tensor : tensors) tensor.data = {};
    return tensors;
}

void expect_corrupt(std::string_view header, std::size_t data_bytes,
                    const std::vector<std::string>& fragments,
                    ErrorCode code = ErrorCode::kCorruptData) {
    std::vector<std::string> expected = fragments;
    expected.push_back(kSource);
    expect_error([&] { parse(header, data_bytes); }, code, expected);
}

TEST(Safetensors, ParsesEveryFieldAndOrdersByOffset) {
    const auto buffer = make_safetensors(
        R"({"__metadata__": {"format": "pt"},
            "b": {"dtype": "F16", "shape": [2, 3], "data_offsets": [16, 28]},
            "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            "scalar": {"dtype": "BF16", "shape": [], "data_offsets": [28, 30]},
            "empty": {"dtype": "F32", "shape": [0, 7], "data_offsets": [30, 30]}})",
        30);
    const auto tensors = parse_safetensors(buffer, kSource);
    ASSERT_EQ(tensors.size(), 4u);
    const std::byte* data_start = buffer.data() + buffer.size() - 30;

    EXPECT_EQ(tensors[0].name, "a");
    EXPECT_EQ(tensors[0].dtype, DType::kF32);
    EXPECT_EQ(tensors[0].shape, (std::vector<std::int64_t>{4}));
    EXPECT_EQ(tensors[0].data.data(), data_start);
    EXPECT_EQ(tensors[0].data.size(), 16u);
    EXPECT_EQ(tensors[0].numel(), 4);
    EXPECT_EQ(tensors[0].file, kSource);

    EXPECT_EQ(tensors[1].name, "b");
    EXPECT_EQ(tensors[1].dtype, DType::kF16);
    EXPECT_EQ(tensors[1].shape, (std::vector<std::int64_t>{2, 3}));
    EXPECT_EQ(tensors[1].data.data(), data_start + 16);
    EXPECT_EQ(tensors[1].data.size(), 12u);
    EXPECT_EQ(tensors[1].numel(), 6);

    EXPECT_EQ(tensors[2].name, "scalar");
    EXPECT_EQ(tensors[2].dtype, DType::kBF16);
    EXPECT_TRUE(tensors[2].shape.empty());
    EXPECT_EQ(tensors[2].numel(), 1);
    EXPECT_EQ(tensors[2].data.data(), data_start + 28);
    EXPECT_EQ(static_cast<int>(tensors[2].data[0]), 28);  // the data counts 0, 1, 2, ...

    EXPECT_EQ(tensors[3].name, "empty");
    EXPECT_EQ(tensors[3].numel(), 0);
    EXPECT_TRUE(tensors[3].data.empty());
}

TEST(Safetensors, EmptyHeaderObjectHasNoTensors) {
    EXPECT_TRUE(parse("{}", 0).empty());
}

TEST(Safetensors, ZeroDimensionWinsOverHugeOnes) {
    const auto tensors = parse(R"({"z": {"dtype": "F32", "shape": [9223372036854775807, 4, 0],
                        "data_offsets": [0, 0]}})",
                               0);
    ASSERT_EQ(tensors.size(), 1u);
    EXPECT_EQ(tensors[0].numel(), 0);
}

TEST(Safetensors, TooShortForTheLengthField) {
    const std::vector<std::byte> buffer(5);
    expect_error([&] { parse_safetensors(buffer, kSource); }, ErrorCode::kCorruptData,
                 {kSource, "5 bytes"});
}

TEST(Safetensors, HeaderLengthLargerThanTheFile) {
    auto buffer = make_safetensors("{}", 0);
    buffer[1] = std::byte{0x10};  // claims 4098 header bytes, 2 are there
    expect_error([&] { parse_safetensors(buffer, kSource); }, ErrorCode::kCorruptData,
                 {kSource, "header length 4098"});
    for (int i = 0; i < 8; ++i) buffer[i] = std::byte{0xff};  // claims 2^64 - 1
    expect_error([&] { parse_safetensors(buffer, kSource); }, ErrorCode::kCorruptData,
                 {kSource, "header length 18446744073709551615"});
}

TEST(Safetensors, HeaderThatIsNotJson) {
    expect_corrupt(R"({"w": {"dtype": "F32",)", 0, {"invalid JSON", "line 1"});
    expect_corrupt("\x01\x02garbage", 0, {"invalid JSON"});
}

TEST(Safetensors, HeaderThatIsNotAnObject) {
    expect_corrupt("[1, 2]", 0, {"header is array"});
}

TEST(Safetensors, DuplicateTensorName) {
    expect_corrupt(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                       "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                   8, {"duplicate key 'w'"});
}

TEST(Safetensors, OffsetsPastTheEnd) {
    expect_corrupt(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8,
                   {"tensor 'w'", "data_offsets [0, 16]", "8-byte data section"});
}

TEST(Safetensors, OffsetsAndShapeDisagree) {
    expect_corrupt(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}})", 24,
                   {"tensor 'w'", "hold 16 bytes", "[2, 3]", "needs 24"});
    expect_corrupt(R"({"h": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 16]}})", 24,
                   {"tensor 'h'", "needs 8"});
}

TEST(Safetensors, OverlappingTensors) {
    expect_corrupt(R"({"first": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                       "second": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
                   24, {"'first'", "'second'", "overlap"});
    // Containment is overlap too, even when a tensor in between does not overlap the next.
    expect_corrupt(R"({"outer": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]},
                       "inner": {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]}})",
                   32, {"'outer'", "'inner'", "overlap"});
}

TEST(Safetensors, EmptyTensorsDoNotOverlapAnything) {
    EXPECT_EQ(parse(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                        "e": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]}})",
                    16)
                  .size(),
              2u);
}

TEST(Safetensors, UnsupportedDtypes) {
    for (const std::string dtype : {"I8", "F64", "U8", "BOOL", "F8_E4M3", "float32"}) {
        SCOPED_TRACE(dtype);
        expect_corrupt(
            R"({"w": {"dtype": ")" + dtype + R"(", "shape": [1], "data_offsets": [0, 1]}})", 8,
            {"tensor 'w'", "\"" + dtype + "\"", "F32, F16, BF16"}, ErrorCode::kUnsupported);
    }
}

TEST(Safetensors, MissingOrMistypedFields) {
    expect_corrupt(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", 4,
                   {"tensor 'w'", "missing field 'dtype'"});
    expect_corrupt(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", 4,
                   {"tensor 'w'", "missing field 'shape'"});
    expect_corrupt(R"({"w": {"dtype": "F32", "shape": [1]}})", 4,
                   {"tensor 'w'", "missing field 'data_offsets'"});
    expect_corrupt(R"({"w": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}})", 4,
                   {"tensor 'w'", "'dtype' is 7"});
    expect_corrupt(R"({"w": {"dtype": "F32", "shape": 4, "data_offsets": [0, 4]}})", 4,
                   {"tensor 'w'", "'shape' is 4"});
    expect_corrupt(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 4,
                   {"tensor 'w'", "data_offsets"});
    expect_corrupt(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", 4,
                   {"tensor 'w'", "data_offsets"});
    expect_corrupt(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 4,
                   {"tensor 'w'", "data_offsets"});
    expect_corrupt(R"({"w": [1, 2]})", 4, {"tensor 'w'", "expected an object"});
}

TEST(Safetensors, BadShapes) {
    expect_corrupt(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4,
                   {"tensor 'w'", "shape entry -1"});
    expect_corrupt(R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", 4,
                   {"tensor 'w'", "shape entry 1.5"});
    expect_corrupt(
        R"({"w": {"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 4]}})", 4,
        {"tensor 'w'", "shape entry 18446744073709551615"});
    // 2^32 * 2^32 elements overflow 64 bits; so do 2^62 elements of 4 bytes.
    expect_corrupt(
        R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})", 4,
        {"tensor 'w'", "overflows"});
    expect_corrupt(
        R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 4]}})", 4,
        {"tensor 'w'", "overflows"});
}

TEST(Safetensors, MetadataMustBeAnObjectOfStrings) {
    expect_corrupt(R"({"__metadata__": {"format": 1}})", 0, {"__metadata__", "'format'"});
    expect_corrupt(R"({"__metadata__": "pt"})", 0, {"__metadata__"});
}

TEST(Safetensors, TensorByteCount) {
    const std::vector<std::int64_t> shape{3, 5};
    EXPECT_EQ(tensor_byte_count(shape, DType::kF32), 60u);
    EXPECT_EQ(tensor_byte_count(shape, DType::kBF16), 30u);
    EXPECT_EQ(tensor_byte_count({}, DType::kF16), 2u);
    const std::vector<std::int64_t> negative{3, -5};
    EXPECT_EQ(tensor_byte_count(negative, DType::kF32), std::nullopt);
    const std::vector<std::int64_t> huge{std::numeric_limits<std::int64_t>::max(), 2};
    EXPECT_EQ(tensor_byte_count(huge, DType::kF32), std::nullopt);
    EXPECT_EQ(format_shape(shape), "[3, 5]");
    EXPECT_EQ(format_shape({}), "[]");
}

}  // namespace
}  // namespace llmserve::io
