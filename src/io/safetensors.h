// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON header, then
// the raw tensor data. See https://github.com/huggingface/safetensors (format description only).
#pragma once

#include "common/dtype.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace llmserve::io {

// One tensor inside a mapped file. `data` points into the mapping (kept alive by the WeightStore
// that owns it). `data` has no alignment guarantee: read it with memcpy or convert_to_f32.
struct TensorView {
    std::string name;  // as stored in the file
    DType dtype = DType::kF32;
    std::vector<std::int64_t> shape;
    std::span<const std::byte> data;  // exactly tensor_byte_count(shape, dtype) bytes
    std::string file;                 // file name it came from, for error messages
    std::int64_t numel() const;       // product of shape (1 for a scalar)
};

// product(shape) * dtype_size(dtype) (quantized types: whole blocks of the last dimension, else
// nullopt), or nullopt when a dimension is negative or the product overflows. A zero dimension
// gives 0 whatever the others are.
std::optional<std::uint64_t> tensor_byte_count(std::span<const std::int64_t> shape, DType dtype);

// "[768, 2304]" — for error messages.
std::string format_shape(std::span<const std::int64_t> shape);

// Parses a safetensors buffer: 8-byte little-endian header length N, N bytes of JSON header
// {name: {"dtype": "F32"|"F16"|"BF16", "shape": [...], "data_offsets": [begin, end]},
//  "__metadata__": {string: string}}, then data. Offsets are relative to the data section.
// Validates strictly: N fits in the buffer; the header is a JSON object without duplicate names;
// each dtype is supported (others: kUnsupported naming the tensor and dtype); the shape is
// non-negative and its product * dtype size == end - begin (no overflow); the offsets lie within
// the data section; tensors do not overlap. Every other error is kCorruptData; every message
// names `source` and the tensor/field at fault. Returns the tensors ordered by data offset, with
// `file` = `source` and `data` pointing into `buffer`. Used directly by the fuzzer.
std::vector<TensorView> parse_safetensors(std::span<const std::byte> buffer,
                                          const std::string& source);

}  // namespace llmserve::io
