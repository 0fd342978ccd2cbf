#include "io/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include "common/error.h"

namespace llmserve::io {
namespace {

constexpr std::uint32_t kVersion = 3;
constexpr std::uint64_t kDefaultAlignment = 32;
constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr std::string_view kAlignmentKey = "general.alignment";
constexpr int kMaxArrayDepth = 4;  // arrays of arrays; deeper nesting only serves to attack

// ggml's type numbers for the tensor types llmserve computes with.
std::optional<DType> dtype_of_ggml(std::uint32_t type) {
    switch (type) {
        case 0:
            return DType::kF32;
        case 1:
            return DType::kF16;
        case 2:
            return DType::kQ4_0;
        case 6:
            return DType::kQ5_0;
        case 7:
            return DType::kQ5_1;
        case 8:
            return DType::kQ8_0;
        case 12:
            return DType::kQ4_K;
        case 13:
            return DType::kQ5_K;
        case 14:
            return DType::kQ6_K;
        case 30:
            return DType::kBF16;
        default:
            return std::nullopt;
    }
}

// Names of ggml types llmserve does not compute with, for the error message.
std::string ggml_type_name(std::uint32_t type) {
    static constexpr std::string_view kNames[] = {
        "F32",     "F16",    "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
        "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
        "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
        "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16"};
    if (type < std::size(kNames)) return std::string(kNames[type]);
    return fmt::format("{} (unknown)", type);
}

// Reads little-endian fields from the buffer, failing with the file name and what was being read
// when the buffer ends first.
class Reader {
  public:
    Reader(std::span<const std::byte> buffer, const std::string& source)
        : buffer_(buffer), source_(source) {}

    std::size_t offset() const { return offset_; }
    std::size_t remaining() const { return buffer_.size() - offset_; }

    std::span<const std::byte> take(std::uint64_t count, std::string_view what) {
        if (count > remaining())
            fail(ErrorCode::kCorruptData,
                 "{}: file ends at byte {} inside {} ({} bytes needed, {} left): truncated?",
                 source_, buffer_.size(), what, count, remaining());
        const auto bytes = buffer_.subspan(offset_, count);
        offset_ += count;
        return bytes;
    }
    template <typename T>
    T read(std::string_view what) {
        const auto bytes = take(sizeof(T), what);
        T value;
        std::memcpy(&value, bytes.data(), sizeof(T));
        static_assert(std::endian::native == std::endian::little);
        return value;
    }
    std::string string(std::string_view what) {
        const auto length = read<std::uint64_t>(what);
        const auto bytes = take(length, what);
        return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }

  private:
    std::span<const std::byte> buffer_;
    const std::string& source_;
    std::size_t offset_ = 0;
};

// The fewest bytes a value of `type` takes in the file (for the check of array counts).
std::uint64_t min_bytes(GgufType type) {
    switch (type) {
        case GgufType::kU8:
        case GgufType::kI8:
        case GgufType::kBool:
            return 1;
        case GgufType::kU16:
        case GgufType::kI16:
            return 2;
        case GgufType::kU32:
        case GgufType::kI32:
        case GgufType::kF32:
            return 4;
        case GgufType::kString:
        case GgufType::kU64:
        case GgufType::kI64:
        case GgufType::kF64:
            return 8;
        case GgufType::kArray:
            return 12;
    }
    return 1;
}

GgufType read_type(Reader& in, const std::string& source, const std::string& key) {
    const auto raw = in.read<std::uint32_t>("a metadata value type");
    if (raw > static_cast<std::uint32_t>(GgufType::kF64))
        fail(ErrorCode::kCorruptData, "{}: metadata '{}': unknown value type {}", source, key, raw);
    return static_cast<GgufType>(raw);
}

GgufValue read_value(Reader& in, GgufType type, const std::string& source, const std::string& key,
                     int depth);

// `count` elements of `element_type`, held compactly (see GgufValue).
decltype(GgufValue::value) read_array(Reader& in, GgufType element_type, std::uint64_t count,
                                      const std::string& source, const std::string& key,
                                      int depth) {
    auto read_all = [&]<typename T>(auto convert) {
        std::vector<T> out;
        out.reserve(count);
        for (std::uint64_t i = 0; i < count; ++i)
            out.push_back(convert(read_value(in, element_type, source, key, depth + 1)));
        return out;
    };
    switch (element_type) {
        case GgufType::kString:
            return read_all.operator()<std::string>(
                [](GgufValue e) { return std::get<std::string>(std::move(e.value)); });
        case GgufType::kF32:
        case GgufType::kF64:
            return read_all.operator()<double>(
                [](GgufValue e) { return std::get<double>(e.value); });
        case GgufType::kArray:
            return read_all.operator()<GgufValue>([](GgufValue e) { return e; });
        case GgufType::kBool:
            return read_all.operator()<std::int64_t>(
                [](GgufValue e) { return std::int64_t{std::get<bool>(e.value)}; });
        default:
            return read_all.operator()<std::int64_t>([&](GgufValue e) {
                if (!std::holds_alternative<std::int64_t>(e.value))
                    fail(ErrorCode::kCorruptData,
                         "{}: metadata '{}': array element {} does not fit a signed 64-bit integer",
                         source, key, std::get<std::uint64_t>(e.value));
                return std::get<std::int64_t>(e.value);
            });
    }
}

GgufValue read_value(Reader& in, GgufType type, const std::string& source, const std::string& key,
                     int depth) {
    GgufValue v;
    v.type = type;
    const std::string what = fmt::format("the value of metadata '{}'", key);
    switch (type) {
        case GgufType::kU8:
            v.value = std::int64_t{in.read<std::uint8_t>(what)};
            break;
        case GgufType::kI8:
            v.value = std::int64_t{in.read<std::int8_t>(what)};
            break;
        case GgufType::kU16:
            v.value = std::int64_t{in.read<std::uint16_t>(what)};
            break;
        case GgufType::kI16:
            v.value = std::int64_t{in.read<std::int16_t>(what)};
            break;
        case GgufType::kU32:
            v.value = std::int64_t{in.read<std::uint32_t>(what)};
            break;
        case GgufType::kI32:
            v.value = std::int64_t{in.read<std::int32_t>(what)};
            break;
        case GgufType::kI64:
            v.value = in.read<std::int64_t>(what);
            break;
        case GgufType::kU64: {
            const auto u = in.read<std::uint64_t>(what);
            if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                v.value = static_cast<std::int64_t>(u);
            else
                v.value = u;
            break;
        }
        case GgufType::kF32:
            v.value = double{in.read<float>(what)};
            break;
        case GgufType::kF64:
            v.value = in.read<double>(what);
            break;
        case GgufType::kBool: {
            const auto b = in.read<std::uint8_t>(what);
            if (b > 1)
                fail(ErrorCode::kCorruptData, "{}: metadata '{}': bool value {} is not 0 or 1",
                     source, key, b);
            v.value = b == 1;
            break;
        }
        case GgufType::kString:
            v.value = in.string(what);
            break;
        case GgufType::kArray: {
            if (depth >= kMaxArrayDepth)
                fail(ErrorCode::kCorruptData, "{}: metadata '{}': arrays nested deeper than {}",
                     source, key, kMaxArrayDepth);
            v.element_type = read_type(in, source, key);
            const auto count = in.read<std::uint64_t>(what);
            if (count > kGgufMaxArrayElements || count * min_bytes(v.element_type) > in.remaining())
                fail(ErrorCode::kCorruptData,
                     "{}: metadata '{}': array of {} {} values does not fit in the {} bytes left",
                     source, key, count, to_string(v.element_type), in.remaining());
            v.value = read_array(in, v.element_type, count, source, key, depth);
            break;
        }
    }
    return v;
}

struct TensorInfo {
    TensorView view;
    std::uint64_t offset = 0;  // from the start of the data section
    std::uint64_t bytes = 0;
};

TensorInfo read_tensor_info(Reader& in, const std::string& source, std::uint64_t index) {
    TensorInfo info;
    TensorView& view = info.view;
    view.file = source;
    view.name = in.string(fmt::format("the name of tensor {}", index));
    const std::string& name = view.name;
    const auto dims = in.read<std::uint32_t>(fmt::format("tensor '{}'", name));
    if (dims == 0 || dims > kGgufMaxDimensions)
        fail(ErrorCode::kCorruptData, "{}: tensor '{}': {} dimensions, expected 1 to {}", source,
             name, dims, kGgufMaxDimensions);
    std::vector<std::uint64_t> ne(dims);
    for (auto& n : ne) n = in.read<std::uint64_t>(fmt::format("the shape of tensor '{}'", name));
    const auto raw_type = in.read<std::uint32_t>(fmt::format("the type of tensor '{}'", name));
    info.offset = in.read<std::uint64_t>(fmt::format("the offset of tensor '{}'", name));

    const auto dtype = dtype_of_ggml(raw_type);
    if (!dtype)
        fail(ErrorCode::kUnsupported,
             "{}: tensor '{}' has type {}, which llmserve does not support (supported: F32, F16, "
             "BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)",
             source, name, ggml_type_name(raw_type));
    view.dtype = *dtype;
    std::uint64_t count = 1;
    for (const std::uint64_t n : ne) {
        if (n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
            __builtin_mul_overflow(count, n, &count))
            fail(ErrorCode::kCorruptData, "{}: tensor '{}': shape {} overflows", source, name,
                 fmt::join(ne, " x "));
    }
    const std::size_t per_block = block_elements(view.dtype);
    if (ne[0] % per_block != 0)
        fail(ErrorCode::kCorruptData,
             "{}: tensor '{}': row length {} is not a whole number of {}-value {} blocks", source,
             name, ne[0], per_block, to_string(view.dtype));
    if (__builtin_mul_overflow(count / per_block, block_bytes(view.dtype), &info.bytes))
        fail(ErrorCode::kCorruptData, "{}: tensor '{}': shape {} overflows", source, name,
             fmt::join(ne, " x "));
    view.shape.assign(ne.rbegin(), ne.rend());
    return info;
}

}  // namespace

std::string_view to_string(GgufType type) {
    switch (type) {
        case GgufType::kU8:
            return "u8";
        case GgufType::kI8:
            return "i8";
        case GgufType::kU16:
            return "u16";
        case GgufType::kI16:
            return "i16";
        case GgufType::kU32:
            return "u32";
        case GgufType::kI32:
            return "i32";
        case GgufType::kF32:
            return "f32";
        case GgufType::kBool:
            return "bool";
        case GgufType::kString:
            return "string";
        case GgufType::kArray:
            return "array";
        case GgufType::kU64:
            return "u64";
        case GgufType::kI64:
            return "i64";
        case GgufType::kF64:
            return "f64";
    }
    return "?";
}

GgufFile parse_gguf(std::span<const std::byte> buffer, const std::string& source) {
    GgufFile file;
    file.source = source;
    Reader in(buffer, source);
    const auto magic = in.take(4, "the magic number");
    if (std::memcmp(magic.data(), kMagic, 4) != 0)
        fail(ErrorCode::kCorruptData, "{}: not a GGUF file (it does not start with 'GGUF')",
             source);
    file.version = in.read<std::uint32_t>("the version");
    if (file.version == 1 || file.version == 2)
        fail(ErrorCode::kUnsupported,
             "{}: GGUF version {} is not supported (only version 3): convert the model again "
             "with a current llama.cpp",
             source, file.version);
    if (file.version != kVersion)
        fail(ErrorCode::kCorruptData,
             "{}: GGUF version {} is unknown (expected 3; a big-endian file reads as 50331648)",
             source, file.version);
    const auto tensor_count = in.read<std::uint64_t>("the tensor count");
    const auto metadata_count = in.read<std::uint64_t>("the metadata count");
    // Each metadata entry takes at least 13 bytes, each tensor info at least 32.
    if (metadata_count > in.remaining() / 13)
        fail(ErrorCode::kCorruptData, "{}: metadata count {} does not fit in a {}-byte file",
             source, metadata_count, buffer.size());
    if (tensor_count > in.remaining() / 32)
        fail(ErrorCode::kCorruptData, "{}: tensor count {} does not fit in a {}-byte file", source,
             tensor_count, buffer.size());

    for (std::uint64_t i = 0; i < metadata_count; ++i) {
        std::string key = in.string(fmt::format("metadata key {}", i));
        const GgufType type = read_type(in, source, key);
        GgufValue value = read_value(in, type, source, key, 0);
        if (file.metadata.contains(key))
            fail(ErrorCode::kCorruptData, "{}: metadata key '{}' appears twice", source, key);
        file.metadata.emplace(std::move(key), std::move(value));
    }
    if (file.find(kAlignmentKey) != nullptr) {
        const std::int64_t alignment = file.integer(kAlignmentKey);
        if (alignment <= 0 || !std::has_single_bit(static_cast<std::uint64_t>(alignment)) ||
            alignment > (1 << 20))
            fail(ErrorCode::kCorruptData,
                 "{}: metadata '{}' is {}, expected a power of two up to 1 MiB", source,
                 kAlignmentKey, alignment);
        file.alignment = static_cast<std::uint64_t>(alignment);
    } else {
        file.alignment = kDefaultAlignment;
    }

    std::vector<TensorInfo> infos;
    std::set<std::string> names;  // copies: infos moves its strings as it grows
    for (std::uint64_t i = 0; i < tensor_count; ++i) {
        infos.push_back(read_tensor_info(in, source, i));
        if (!names.insert(infos.back().view.name).second)
            fail(ErrorCode::kCorruptData, "{}: tensor '{}' appears twice", source,
                 infos.back().view.name);
    }
    const std::uint64_t data_start =
        (in.offset() + file.alignment - 1) / file.alignment * file.alignment;
    const std::uint64_t data_bytes = data_start <= buffer.size() ? buffer.size() - data_start : 0;

    // Each tensor lies inside the data section, at an aligned offset.
    for (const TensorInfo& info : infos) {
        const std::string& name = info.view.name;
        if (info.offset % file.alignment != 0)
            fail(ErrorCode::kCorruptData,
                 "{}: tensor '{}': offset {} is not a multiple of the alignment {}", source, name,
                 info.offset, file.alignment);
        if (info.offset > data_bytes || info.bytes > data_bytes - info.offset)
            fail(ErrorCode::kCorruptData,
                 "{}: tensor '{}': bytes [{}, {}) of the data section run past its end at {} "
                 "(file truncated?)",
                 source, name, info.offset, info.offset + info.bytes, data_bytes);
    }
    // In offset order, no tensor may start before the furthest end so far (empty ones hold
    // no bytes).
    std::vector<std::size_t> order(infos.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return infos[a].offset < infos[b].offset; });
    const TensorInfo* furthest = nullptr;
    for (const std::size_t i : order) {
        const TensorInfo& info = infos[i];
        if (info.bytes == 0) continue;
        if (furthest != nullptr && info.offset < furthest->offset + furthest->bytes)
            fail(ErrorCode::kCorruptData,
                 "{}: tensors '{}' (bytes [{}, {})) and '{}' (bytes [{}, {})) overlap", source,
                 furthest->view.name, furthest->offset, furthest->offset + furthest->bytes,
                 info.view.name, info.offset, info.offset + info.bytes);
        if (furthest == nullptr || info.offset + info.bytes > furthest->offset + furthest->bytes)
            furthest = &info;
    }
    for (TensorInfo& info : infos) {
        if (info.bytes > 0) info.view.data = buffer.subspan(data_start + info.offset, info.bytes);
        file.tensors.push_back(std::move(info.view));
    }
    return file;
}

const GgufValue* GgufFile::find(std::string_view key) const {
    const auto it = metadata.find(key);
    return it == metadata.end() ? nullptr : &it->second;
}

namespace {

[[noreturn]] void wrong_type(const GgufFile& file, std::string_view key, const GgufValue& value,
                             std::string_view expected) {
    const std::string actual = value.type == GgufType::kArray
                                   ? fmt::format("an array of {}", to_string(value.element_type))
                                   : std::string(to_string(value.type));
    fail(ErrorCode::kCorruptData, "{}: metadata '{}' is {}, expected {}", file.source, key, actual,
         expected);
}

const GgufValue& required(const GgufFile& file, std::string_view key) {
    const GgufValue* value = file.find(key);
    if (value == nullptr)
        fail(ErrorCode::kNotFound, "{}: metadata '{}' is missing", file.source, key);
    return *value;
}

std::optional<std::int64_t> as_integer(const GgufValue& value) {
    if (const auto* i = std::get_if<std::int64_t>(&value.value)) return *i;
    return std::nullopt;
}

std::optional<double> as_number(const GgufValue& value) {
    if (const auto* d = std::get_if<double>(&value.value)) return *d;
    if (const auto* i = std::get_if<std::int64_t>(&value.value)) return static_cast<double>(*i);
    return std::nullopt;
}

template <typename T>
const std::vector<T>* as_array(const GgufValue& value) {
    return std::get_if<std::vector<T>>(&value.value);
}

}  // namespace

std::int64_t GgufFile::integer(std::string_view key) const {
    const GgufValue& value = required(*this, key);
    const auto i = as_integer(value);
    if (!i) wrong_type(*this, key, value, "an integer");
    return *i;
}

std::optional<std::int64_t> GgufFile::optional_integer(std::string_view key) const {
    if (find(key) == nullptr) return std::nullopt;
    return integer(key);
}

double GgufFile::number(std::string_view key) const {
    const GgufValue& value = required(*this, key);
    const auto d = as_number(value);
    if (!d) wrong_type(*this, key, value, "a number");
    return *d;
}

std::optional<double> GgufFile::optional_number(std::string_view key) const {
    if (find(key) == nullptr) return std::nullopt;
    return number(key);
}

std::string GgufFile::string(std::string_view key) const {
    const GgufValue& value = required(*this, key);
    const auto* s = std::get_if<std::string>(&value.value);
    if (s == nullptr) wrong_type(*this, key, value, "a string");
    return *s;
}

std::optional<std::string> GgufFile::optional_string(std::string_view key) const {
    if (find(key) == nullptr) return std::nullopt;
    return string(key);
}

std::optional<bool> GgufFile::optional_bool(std::string_view key) const {
    const GgufValue* value = find(key);
    if (value == nullptr) return std::nullopt;
    const auto* b = std::get_if<bool>(&value->value);
    if (b == nullptr) wrong_type(*this, key, *value, "a bool");
    return *b;
}

std::vector<std::string> GgufFile::strings(std::string_view key) const {
    const GgufValue& value = required(*this, key);
    const auto* elements = as_array<std::string>(value);
    if (elements == nullptr) wrong_type(*this, key, value, "an array of strings");
    return *elements;
}

std::vector<std::int64_t> GgufFile::integers(std::string_view key) const {
    const GgufValue& value = required(*this, key);
    const auto* elements = as_array<std::int64_t>(value);
    if (elements == nullptr || value.element_type == GgufType::kBool)
        wrong_type(*this, key, value, "an array of integers");
    return *elements;
}

std::vector<double> GgufFile::numbers(std::string_view key) const {
    const GgufValue& value = required(*this, key);
    if (const auto* doubles = as_array<double>(value)) return *doubles;
    const auto* ints = as_array<std::int64_t>(value);
    if (ints == nullptr || value.element_type == GgufType::kBool)
        wrong_type(*this, key, value, "an array of numbers");
    return {ints->begin(), ints->end()};
}

bool is_gguf_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    if (!in.read(magic, 4)) return false;
    return std::memcmp(magic, kMagic, 4) == 0;
}

GgufMapped open_gguf(const std::filesystem::path& path) {
    GgufMapped mapped{MappedFile::open(path), {}};
    mapped.gguf = parse_gguf(mapped.file.bytes(), path.string());
    return mapped;
}

}  // namespace llmserve::io
