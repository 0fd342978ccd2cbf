#include "io/safetensors.h"

#include "common/error.h"
#include "io/json_util.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <limits>
#include <optional>

namespace llmserve::io {
namespace {

constexpr std::size_t kLengthFieldBytes = 8;
constexpr std::string_view kMetadataKey = "__metadata__";

std::optional<DType> dtype_from_name(std::string_view name) {
    if (name == "F32") return DType::kF32;
    if (name == "F16") return DType::kF16;
    if (name == "BF16") return DType::kBF16;
    return std::nullopt;
}

std::uint64_t read_u64_le(std::span<const std::byte> bytes) {
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < 8; ++i) {
        value |= static_cast<std::uint64_t>(bytes[i]) << (8 * i);
    }
    return value;
}

// The header's "__metadata__": a flat object of strings.
void check_metadata(const Json& metadata, const std::string& source) {
    if (!metadata.is_object()) {
        fail(ErrorCode::kCorruptData, "{}: '{}' is {}, expected an object of strings", source,
             kMetadataKey, describe_json(metadata));
    }
    for (const auto& [key, value] : metadata.items()) {
        if (!value.is_string()) {
            fail(ErrorCode::kCorruptData, "{}: '{}' field '{}' is {}, expected a string", source,
                 kMetadataKey, key, describe_json(value));
        }
    }
}

const Json& required_field(const Json& entry, std::string_view field, const std::string& source,
                           const std::string& tensor) {
    const auto it = entry.find(field);
    if (it == entry.end()) {
        fail(ErrorCode::kCorruptData, "{}: tensor '{}': missing field '{}'", source, tensor, field);
    }
    return *it;
}

struct Placement {
    std::uint64_t begin, end;  // relative to the data section
};

struct ParsedEntry {
    TensorView view;  // without data yet
    Placement placement;
};

// Parses and checks one header entry; `data_bytes` is the size of the data section.
ParsedEntry parse_entry(const std::string& name, const Json& entry, std::uint64_t data_bytes,
                        const std::string& source) {
    if (!entry.is_object()) {
        fail(ErrorCode::kCorruptData, "{}: tensor '{}': entry is {}, expected an object", source,
             name, describe_json(entry));
    }
    TensorView view;
    view.name = name;
    view.file = source;

    const Json& dtype = required_field(entry, "dtype", source, name);
    if (!dtype.is_string()) {
        fail(ErrorCode::kCorruptData, "{}: tensor '{}': field 'dtype' is {}, expected a string",
             source, name, describe_json(dtype));
    }
    const auto parsed_dtype = dtype_from_name(dtype.get_ref<const std::string&>());
    if (!parsed_dtype) {
        fail(ErrorCode::kUnsupported,
             "{}: tensor '{}': dtype {} is not supported (supported: F32, F16, BF16)", source, name,
             describe_json(dtype));
    }
    view.dtype = *parsed_dtype;

    const Json& shape = required_field(entry, "shape", source, name);
    if (!shape.is_array()) {
        fail(ErrorCode::kCorruptData, "{}: tensor '{}': field 'shape' is {}, expected an array",
             source, name, describe_json(shape));
    }
    for (const Json& dimension : shape) {
        const auto size = json_to_int64(dimension);
        if (!size || *size < 0) {
            fail(ErrorCode::kCorruptData,
                 "{}: tensor '{}': shape entry {} is not a non-negative integer", source, name,
                 describe_json(dimension));
        }
        view.shape.push_back(*size);
    }
    const auto byte_count = tensor_byte_count(view.shape, view.dtype);
    if (!byte_count) {
        fail(ErrorCode::kCorruptData, "{}: tensor '{}': shape {} overflows the size of a tensor",
             source, name, format_shape(view.shape));
    }

    const Json& offsets = required_field(entry, "data_offsets", source, name);
    std::optional<std::int64_t> begin, end;
    if (offsets.is_array() && offsets.size() == 2) {
        begin = json_to_int64(offsets[0]);
        end = json_to_int64(offsets[1]);
    }
    if (!begin || !end || *begin < 0 || *end < *begin) {
        fail(ErrorCode::kCorruptData,
             "{}: tensor '{}': field 'data_offsets' must be [begin, end] with 0 <= begin <= end",
             source, name);
    }
    const Placement placement{static_cast<std::uint64_t>(*begin), static_cast<std::uint64_t>(*end)};
    if (placement.end > data_bytes) {
        fail(ErrorCode::kCorruptData,
             "{}: tensor '{}': data_offsets [{}, {}] run past the end of the {}-byte data "
             "section (file truncated?)",
             source, name, placement.begin, placement.end, data_bytes);
    }
    if (placement.end - placement.begin != *byte_count) {
        fail(ErrorCode::kCorruptData,
             "{}: tensor '{}': data_offsets [{}, {}] hold {} bytes, but shape {} of {} needs {}",
             source, name, placement.begin, placement.end, placement.end - placement.begin,
             format_shape(view.shape), dtype.get_ref<const std::string&>(), *byte_count);
    }
    return {std::move(view), placement};
}

}  // namespace

std::int64_t TensorView::numel() const {
    // A zero anywhere wins: the other dimensions' product may not fit (it is only checked when
    // the tensor holds data).
    if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
    std::int64_t count = 1;
    for (const std::int64_t size : shape) count *= size;
    return count;
}

std::optional<std::uint64_t> tensor_byte_count(std::span<const std::int64_t> shape, DType dtype) {
    if (std::any_of(shape.begin(), shape.end(), [](std::int64_t n) { return n < 0; })) {
        return std::nullopt;
    }
    if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
    // Quantized types count whole blocks of the last (contiguous) dimension.
    const std::uint64_t per_block = block_elements(dtype);
    if (per_block > 1 && (shape.empty() || shape.back() % per_block != 0)) return std::nullopt;
    std::uint64_t count = block_bytes(dtype);
    for (std::size_t i = 0; i < shape.size(); ++i) {
        std::uint64_t size = static_cast<std::uint64_t>(shape[i]);
        if (i + 1 == shape.size()) size /= per_block;
        if (__builtin_mul_overflow(count, size, &count)) return std::nullopt;
    }
    return count;
}

std::string format_shape(std::span<const std::int64_t> shape) {
    return fmt::format("[{}]", fmt::join(shape, ", "));
}

std::vector<TensorView> parse_safetensors(std::span<const std::byte> buffer,
                                          const std::string& source) {
    if (buffer.size() < kLengthFieldBytes) {
        fail(ErrorCode::kCorruptData,
             "{}: {} bytes is too short for a safetensors file (the header length alone is {})",
             source, buffer.size(), kLengthFieldBytes);
    }
    const std::uint64_t header_bytes = read_u64_le(buffer.first(kLengthFieldBytes));
    const std::size_t available = buffer.size() - kLengthFieldBytes;
    if (header_bytes > available) {
        fail(ErrorCode::kCorruptData,
             "{}: header length {} exceeds the {} bytes that follow it (file truncated or not "
             "safetensors)",
             source, header_bytes, available);
    }
    const auto header_span = buffer.subspan(kLengthFieldBytes, header_bytes);
    const std::string_view header_text(reinterpret_cast<const char*>(header_span.data()),
                                       header_span.size());
    const Json header = parse_json(header_text, fmt::format("{} (safetensors header)", source));
    if (!header.is_object()) {
        fail(ErrorCode::kCorruptData, "{}: safetensors header is {}, expected a JSON object",
             source, describe_json(header));
    }

    const auto data = buffer.subspan(kLengthFieldBytes + header_bytes);
    std::vector<TensorView> tensors;
    std::vector<Placement> placements;
    for (const auto& [name, entry] : header.items()) {
        if (name == kMetadataKey) {
            check_metadata(entry, source);
            continue;
        }
        auto [view, placement] = parse_entry(name, entry, data.size(), source);
        view.data = data.subspan(placement.begin, placement.end - placement.begin);
        tensors.push_back(std::move(view));
        placements.push_back(placement);
    }

    // Order by offset, then check that no two tensors share a byte (empty tensors hold none).
    std::vector<std::size_t> order(tensors.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return placements[a].begin != placements[b].begin
                   ? placements[a].begin < placements[b].begin
                   : placements[a].end < placements[b].end;
    });
    std::optional<std::size_t> furthest;  // the non-empty tensor reaching furthest so far
    for (const std::size_t i : order) {
        if (placements[i].begin == placements[i].end) continue;
        if (furthest && placements[i].begin < placements[*furthest].end) {
            fail(ErrorCode::kCorruptData,
                 "{}: tensors '{}' (bytes [{}, {})) and '{}' (bytes [{}, {})) overlap", source,
                 tensors[*furthest].name, placements[*furthest].begin, placements[*furthest].end,
                 tensors[i].name, placements[i].begin, placements[i].end);
        }
        if (!furthest || placements[i].end > placements[*furthest].end) furthest = i;
    }

    std::vector<TensorView> ordered;
    ordered.reserve(tensors.size());
    for (const std::size_t i : order) ordered.push_back(std::move(tensors[i]));
    return ordered;
}

}  // namespace llmserve::io
