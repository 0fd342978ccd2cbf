// GGUF files (llama.cpp's format), version 3, little-endian: "GGUF", u32 version, u64 tensor
// count, u64 metadata count, the metadata key/values, the tensor infos, then (at the next multiple
// of general.alignment) the tensor data. Parsed strictly; the data stays in the mapping.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "io/mapped_file.h"
#include "io/safetensors.h"

namespace llmserve::io {

// The value types of GGUF metadata (their numbers in the file).
enum class GgufType : std::uint32_t {
    kU8 = 0,
    kI8 = 1,
    kU16 = 2,
    kI16 = 3,
    kU32 = 4,
    kI32 = 5,
    kF32 = 6,
    kBool = 7,
    kString = 8,
    kArray = 9,
    kU64 = 10,
    kI64 = 11,
    kF64 = 12,
};
std::string_view to_string(GgufType type);  // "u32", "string", "array", ...

// One metadata value. Integers of every width are held as int64 (a u64 above INT64_MAX as
// uint64); floats as double. Arrays of element_type are held compactly: integers and bools as
// int64, floats as double, strings, and only nested arrays as GgufValues.
struct GgufValue {
    GgufType type = GgufType::kU8;
    GgufType element_type = GgufType::kU8;  // arrays only
    std::variant<std::int64_t, std::uint64_t, double, bool, std::string, std::vector<std::int64_t>,
                 std::vector<double>, std::vector<std::string>, std::vector<GgufValue>>
        value;
};

class GgufFile {
  public:
    std::uint32_t version = 0;
    std::uint64_t alignment = 32;  // general.alignment, 32 when absent
    std::string source;            // the file name, for error messages
    std::map<std::string, GgufValue, std::less<>> metadata;
    // In file order; shapes in PyTorch order (the reverse of the file's ne: [rows, row length]).
    std::vector<TensorView> tensors;

    const GgufValue* find(std::string_view key) const;
    // Typed getters: kNotFound naming the file and key when absent (the optional_ forms return
    // nullopt), kCorruptData naming the key, its type and the expected one otherwise.
    std::int64_t integer(std::string_view key) const;  // any integer type that fits int64
    std::optional<std::int64_t> optional_integer(std::string_view key) const;
    double number(std::string_view key) const;  // a float or an integer
    std::optional<double> optional_number(std::string_view key) const;
    std::string string(std::string_view key) const;
    std::optional<std::string> optional_string(std::string_view key) const;
    std::optional<bool> optional_bool(std::string_view key) const;
    std::vector<std::string> strings(std::string_view key) const;  // an array of strings
    std::vector<std::int64_t> integers(std::string_view key) const;
    std::vector<double> numbers(std::string_view key) const;
};

// The most metadata array elements and string bytes a file may hold (a tokenizer of 256k tokens
// with merges stays far below): a hostile count is refused before anything is allocated.
constexpr std::uint64_t kGgufMaxArrayElements = std::uint64_t{1} << 24;
constexpr std::uint64_t kGgufMaxDimensions = 4;

// Parses a GGUF buffer. Validates: magic; version 3 (1 and 2 refused by name, kUnsupported);
// counts and lengths within the buffer; metadata types known, keys unique, general.alignment a
// power of two; per tensor: unique name, 1-4 dimensions, a known type supported by llmserve
// (kUnsupported naming the tensor and type otherwise), a row length that is whole blocks, a byte
// size that does not overflow, an aligned offset whose data lies inside the file, no overlap with
// another tensor. Every other error is kCorruptData; every message names `source` and the key or
// tensor at fault. Views point into `buffer`. Used directly by the fuzzer.
GgufFile parse_gguf(std::span<const std::byte> buffer, const std::string& source);

// True when the file starts with the GGUF magic (false when it cannot be read).
bool is_gguf_file(const std::filesystem::path& path);

// A mapped GGUF file and its parsed contents; the views stay valid while it lives.
struct GgufMapped {
    MappedFile file;
    GgufFile gguf;
};
GgufMapped open_gguf(const std::filesystem::path& path);

}  // namespace llmserve::io
