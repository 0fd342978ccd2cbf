#include "backend/cpu/packed_matrix.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "common/dtype.h"
#include "common/error.h"

namespace llmserve::backend::cpu {
namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;

std::size_t element_bytes(WeightFormat format) {
    return format == WeightFormat::kF32 ? 4 : 2;
}

// Reads the tensor's values as float: W[k, n] whatever the stored orientation.
class Source {
  public:
    Source(const io::TensorView& tensor, MatrixLayout layout)
        : tensor_(tensor),
          layout_(layout),
          stored_cols_(static_cast<std::size_t>(tensor.shape[1])) {}

    int k() const {
        return static_cast<int>(tensor_.shape[layout_ == MatrixLayout::kInOut ? 0 : 1]);
    }
    int n() const {
        return static_cast<int>(tensor_.shape[layout_ == MatrixLayout::kInOut ? 1 : 0]);
    }

    // tile[kk * kPanelWidth + j] = W[kk, n0 + j] for every k and the columns [n0, n0 + width);
    // other columns of the tile are left as they are.
    void read_columns(int n0, int width, float* tile, std::vector<float>& scratch) const {
        const std::size_t dsize = dtype_size(tensor_.dtype);
        const std::byte* base = tensor_.data.data();
        if (layout_ == MatrixLayout::kInOut) {  // float types only (checked by pack)
            scratch.resize(width);
            for (int kk = 0; kk < k(); ++kk) {
                const std::size_t offset =
                    (static_cast<std::size_t>(kk) * stored_cols_ + n0) * dsize;
                convert_to_f32(tensor_.dtype, base + offset, width, scratch.data());
                std::copy_n(scratch.data(), width,
                            tile + static_cast<std::size_t>(kk) * kPanelWidth);
            }
        } else {
            scratch.resize(k());
            for (int j = 0; j < width; ++j) {
                const std::size_t offset =
                    static_cast<std::size_t>(n0 + j) * row_bytes(tensor_.dtype, stored_cols_);
                convert_to_f32(tensor_.dtype, base + offset, k(), scratch.data());
                for (int kk = 0; kk < k(); ++kk)
                    tile[static_cast<std::size_t>(kk) * kPanelWidth + j] = scratch[kk];
            }
        }
    }

  private:
    const io::TensorView& tensor_;
    MatrixLayout layout_;
    std::size_t stored_cols_;
};

// Where a q8 / q4 block's values start.
std::size_t values_offset(bool biased) {
    return kQ8ScaleBytes + (biased ? kQ8BiasBytes : 0);
}

void store_half(std::byte* at, float value) {
    const std::uint16_t bits = f32_to_f16(value);
    std::memcpy(at, &bits, sizeof(bits));
}

// Where value kk of column j lies in a q8 / q4 block's values (kernels.h gives the layouts).
void store_quantized(WeightFormat format, std::uint8_t* values, int kk, int j, int q) {
    if (format == WeightFormat::kQ4) {
        values[((kk / 8) * kPanelWidth + j) * 4 + kk % 4] |=
            static_cast<std::uint8_t>((q + kQ4Offset) << (kk % 8 < 4 ? 0 : 4));
    } else {
        values[((kk / 4) * kPanelWidth + j) * 4 + kk % 4] =
            static_cast<std::uint8_t>(q + kQ8Offset);
    }
}
int load_quantized(WeightFormat format, const std::uint8_t* values, int kk, int j) {
    if (format == WeightFormat::kQ4)
        return ((values[((kk / 8) * kPanelWidth + j) * 4 + kk % 4] >> (kk % 8 < 4 ? 0 : 4)) &
                0x0f) -
               kQ4Offset;
    return static_cast<int>(values[((kk / 4) * kPanelWidth + j) * 4 + kk % 4]) - kQ8Offset;
}

// Quantizes one panel's float tile ([k][32], zero where absent) into q8 or q4 blocks (`out`
// zero-filled). q8: d = max|w| / 127. q4: d = -(the value of largest magnitude) / 8, as llama.cpp's
// Q4_0 does: that value maps to -8 exactly and the 16th level is not wasted.
// With block biases (`biased`), they stay zero.
void quantize_panel(WeightFormat format, bool biased, const float* tile, int k, int blocks,
                    std::byte* out) {
    const bool q4 = format == WeightFormat::kQ4;
    const float lowest = q4 ? -8.0f : -127.0f, highest = q4 ? 7.0f : 127.0f;
    for (int b = 0; b < blocks; ++b) {
        std::byte* block =
            out + static_cast<std::size_t>(b) * quantized_block_bytes(format, biased);
        auto* values = reinterpret_cast<std::uint8_t*>(block + values_offset(biased));
        const int k_begin = b * kQ8Block;
        const int k_end = std::min(k, k_begin + kQ8Block);
        for (int j = 0; j < kPanelWidth; ++j) {
            float extreme = 0.0f;
            for (int kk = k_begin; kk < k_end; ++kk) {
                const float w = tile[static_cast<std::size_t>(kk) * kPanelWidth + j];
                if (std::abs(w) > std::abs(extreme)) extreme = w;
            }
            const std::uint16_t scale_bits =
                f32_to_f16(q4 ? extreme / -8.0f : std::abs(extreme) / 127.0f);
            std::memcpy(block + j * sizeof(std::uint16_t), &scale_bits, sizeof(scale_bits));
            const float scale = f16_to_f32(scale_bits);
            const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
            for (int kk = 0; kk < kQ8Block; ++kk) {
                const int k_index = k_begin + kk;
                float q = 0.0f;
                if (k_index < k_end)
                    q = std::nearbyint(tile[static_cast<std::size_t>(k_index) * kPanelWidth + j] *
                                       inverse);
                store_quantized(format, values, kk, j,
                                static_cast<int>(std::clamp(q, lowest, highest)));
            }
        }
    }
}

// Copies GGUF Q8_0 / Q4_0 / Q5_0 rows ([out, in], whole 32-value blocks) into one q8 or q4 panel
// without requantizing: they keep one fp16 scale per 32 inputs of an output, and their integer
// values are the q8 / q4 values as they stand.
void repack_panel(const io::TensorView& tensor, WeightFormat format, bool biased, int n0, int width,
                  int blocks, std::byte* out) {
    const std::size_t stored_row = row_bytes(tensor.dtype, static_cast<std::size_t>(blocks) * 32);
    const std::size_t stored_block = block_bytes(tensor.dtype);
    std::int8_t q[kQ8Block];
    for (int b = 0; b < blocks; ++b) {
        std::byte* block =
            out + static_cast<std::size_t>(b) * quantized_block_bytes(format, biased);
        auto* values = reinterpret_cast<std::uint8_t*>(block + values_offset(biased));
        for (int j = 0; j < width; ++j) {
            const std::byte* src = tensor.data.data() +
                                   static_cast<std::size_t>(n0 + j) * stored_row + b * stored_block;
            std::memcpy(block + j * sizeof(std::uint16_t), src, sizeof(std::uint16_t));
            unpack_symmetric_block(tensor.dtype, src, q);
            for (int kk = 0; kk < kQ8Block; ++kk) store_quantized(format, values, kk, j, q[kk]);
        }
    }
}

// Copies GGUF Q5_1 / Q4_K / Q5_K rows into one q8 or q4 panel with block biases, without
// requantizing: a sub-block's w = s * n - m (n in [0, 15] or [0, 31]) is d = s, q = n, c = -m in
// q8, and d = s, q = n - 8, c = 8 s - m in q4. Only d and c are rounded (to f16; Q5_1's are f16
// already, so it stays exact).
void minimum_blocks_panel(const io::TensorView& tensor, WeightFormat format, int n0, int width,
                          int blocks, std::byte* out) {
    const bool q4 = format == WeightFormat::kQ4;
    const std::size_t stored_row = row_bytes(tensor.dtype, static_cast<std::size_t>(blocks) * 32);
    const std::size_t stored_block = block_bytes(tensor.dtype);
    const int per_stored_block = static_cast<int>(block_elements(tensor.dtype)) / kQ8Block;
    const std::size_t out_block = quantized_block_bytes(format, true);
    MinimumBlocks unpacked;
    for (int j = 0; j < width; ++j) {
        const std::byte* row = tensor.data.data() + static_cast<std::size_t>(n0 + j) * stored_row;
        for (int stored = 0; stored < blocks / per_stored_block; ++stored) {
            unpack_minimum_blocks(tensor.dtype, row + stored * stored_block, unpacked);
            for (int s = 0; s < unpacked.count; ++s) {
                std::byte* block =
                    out + static_cast<std::size_t>(stored * per_stored_block + s) * out_block;
                const float scale = unpacked.scale[s];
                store_half(block + j * sizeof(std::uint16_t), scale);
                store_half(block + kQ8ScaleBytes + j * sizeof(std::uint16_t),
                           q4 ? 8.0f * scale - unpacked.min[s] : -unpacked.min[s]);
                auto* values = reinterpret_cast<std::uint8_t*>(block + values_offset(true));
                for (int kk = 0; kk < kQ8Block; ++kk)
                    store_quantized(format, values, kk, j,
                                    unpacked.values[s][kk] - (q4 ? kQ4Offset : 0));
            }
        }
    }
}

// The q8 kernels take weights in [-127, 127] (their u8 x s8 pair sums must not saturate); llama.cpp
// never writes -128 into a Q8_0 block, but a file may hold one: such a tensor is requantized.
bool holds_minus_128(const io::TensorView& tensor) {
    const std::size_t blocks = tensor.data.size() / block_bytes(DType::kQ8_0);
    for (std::size_t b = 0; b < blocks; ++b) {
        const auto* q = reinterpret_cast<const std::int8_t*>(tensor.data.data() +
                                                             b * block_bytes(DType::kQ8_0) + 2);
        for (int i = 0; i < kQ8Block; ++i)
            if (q[i] == -128) return true;
    }
    return false;
}

// How a tensor's panels are made: converted to f32 and packed (requantized for q8 / q4), or its
// blocks copied as they stand (Q8_0, Q4_0, Q5_0), or with block biases (Q5_1, Q4_K, Q5_K).
enum class Route { kConvert, kCopy, kWithBiases };

// Into q4: Q4_0 is copied and Q4_K keeps its values with block biases. Into q8: Q8_0, Q4_0 and
// Q5_0 are copied, and Q5_1, Q4_K and Q5_K keep theirs with block biases. Every other pair (and
// Q6_K) is converted.
Route route(const io::TensorView& tensor, MatrixLayout layout, WeightFormat format) {
    if (layout != MatrixLayout::kOutIn) return Route::kConvert;
    const DType t = tensor.dtype;
    if (format == WeightFormat::kQ4) {
        if (t == DType::kQ4_0) return Route::kCopy;
        if (t == DType::kQ4_K) return Route::kWithBiases;
    } else if (format == WeightFormat::kQ8) {
        if (t == DType::kQ4_0 || t == DType::kQ5_0 ||
            (t == DType::kQ8_0 && !holds_minus_128(tensor)))
            return Route::kCopy;
        if (has_block_minimums(t)) return Route::kWithBiases;
    }
    return Route::kConvert;
}

}  // namespace

std::size_t packed_bytes(WeightFormat format, int k, int n, bool block_bias) {
    const std::size_t panels = (static_cast<std::size_t>(n) + kPanelWidth - 1) / kPanelWidth;
    if (format == WeightFormat::kQ8 || format == WeightFormat::kQ4)
        return panels * ((static_cast<std::size_t>(k) + kQ8Block - 1) / kQ8Block) *
               quantized_block_bytes(format, block_bias);
    return panels * static_cast<std::size_t>(k) * kPanelWidth * element_bytes(format);
}

std::uint16_t f32_to_f16(float value) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
    const std::uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u)  // NaN: keep the top payload bits, force quiet
        return static_cast<std::uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
    if (magnitude >= 0x47800000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 2^16
    if (magnitude < 0x38800000u) {  // below 2^-14: a subnormal half, m * 2^-24
        const float scaled = std::bit_cast<float>(magnitude) * 16777216.0f;  // exact
        return static_cast<std::uint16_t>(sign |
                                          static_cast<std::uint16_t>(std::nearbyint(scaled)));
    }
    // Rebias the exponent, then round the mantissa from 23 to 10 bits, ties to even; a carry
    // correctly bumps the exponent (up to infinity for values at or above 65520).
    const std::uint32_t rebased = magnitude - 0x38000000u;
    return static_cast<std::uint16_t>(sign | ((rebased + 0xfffu + ((rebased >> 13) & 1u)) >> 13));
}

std::uint16_t f32_to_bf16(float value) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
    return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

AlignedBuffer::AlignedBuffer(std::size_t bytes, bool huge_pages) : size_(bytes) {
    if (bytes < kHugePage) {
        const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + 63) / 64 * 64;
        data_ = static_cast<std::byte*>(::operator new[](rounded, std::align_val_t(64)));
        std::memset(data_, 0, rounded);
        return;
    }
    // Map one huge page more than needed, then trim to a 2 MiB aligned range.
    const std::size_t length = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* raw = mmap(nullptr, length + kHugePage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        fail(ErrorCode::kResourceExhausted, "cannot allocate {} bytes: {}", bytes,
             std::strerror(errno));
    auto* base = static_cast<std::byte*>(raw);
    auto* aligned = reinterpret_cast<std::byte*>(
        (reinterpret_cast<std::uintptr_t>(base) + kHugePage - 1) / kHugePage * kHugePage);
    if (aligned > base) munmap(base, aligned - base);
    if (aligned + length < base + length + kHugePage)
        munmap(aligned + length, base + length + kHugePage - (aligned + length));
    // Only whole huge pages of data: a partly used one would make up to 2 MiB resident for
    // nothing. Advice only: failure is harmless.
    if (huge_pages && bytes >= kHugePage)
        madvise(aligned, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);
    data_ = aligned;
    mapped_ = length;
}

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
    if (this != &other) {
        release();
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
        mapped_ = std::exchange(other.mapped_, 0);
    }
    return *this;
}

AlignedBuffer::~AlignedBuffer() {
    release();
}

void AlignedBuffer::release() noexcept {
    if (data_ == nullptr) return;
    if (mapped_ > 0) {
        munmap(data_, mapped_);
    } else {
        ::operator delete[](data_, std::align_val_t(64));
    }
    data_ = nullptr;
}

std::shared_ptr<std::byte> WeightArena::allocate(std::size_t bytes) {
    constexpr std::size_t kRegion = std::size_t{64} << 20;
    const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + 63) / 64 * 64;
    if (rounded > kRegion / 4) {  // a large matrix: a region of its own
        auto own = std::make_shared<AlignedBuffer>(rounded, /*huge_pages=*/true);
        return {own, own->data()};
    }
    if (!region_ || used_ + rounded > region_->size()) {
        region_ = std::make_shared<AlignedBuffer>(kRegion, /*huge_pages=*/true);
        used_ = 0;
    }
    std::shared_ptr<std::byte> piece(region_, region_->data() + used_);
    used_ += rounded;
    return piece;
}

PackedMatrix PackedMatrix::pack(const io::TensorView& tensor, MatrixLayout layout,
                                WeightFormat format, WorkerPool& pool, WeightArena& arena) {
    const io::TensorView* parts[] = {&tensor};
    return pack(parts, layout, format, pool, arena);
}

bool PackedMatrix::packs_as_parts(std::span<const io::TensorView* const> parts,
                                  MatrixLayout layout) {
    if (parts.empty() || (parts.size() > 1 && layout != MatrixLayout::kOutIn)) return false;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const io::TensorView& part = *parts[i];
        if (part.shape.size() != 2 || part.shape[1] != parts.front()->shape[1]) return false;
        if (i + 1 < parts.size() && part.shape[0] % kPanelWidth != 0) return false;
    }
    return true;
}

PackedMatrix PackedMatrix::pack(std::span<const io::TensorView* const> parts, MatrixLayout layout,
                                WeightFormat format, WorkerPool& pool, WeightArena& arena) {
    if (format == WeightFormat::kAuto)
        fail(ErrorCode::kInternal, "PackedMatrix::pack: resolve the weight format first");
    for (const io::TensorView* tensor : parts) {
        if (tensor->shape.size() != 2)
            fail(ErrorCode::kInternal, "{}: tensor '{}' has {} dimensions, expected a matrix",
                 tensor->file, tensor->name, tensor->shape.size());
        if (is_quantized(tensor->dtype) && layout != MatrixLayout::kOutIn)
            fail(ErrorCode::kInternal, "{}: tensor '{}': {} blocks run along rows, not columns",
                 tensor->file, tensor->name, to_string(tensor->dtype));
    }
    if (!packs_as_parts(parts, layout))
        fail(ErrorCode::kInternal,
             "{}: tensor '{}' and the parts packed with it do not share their inputs or do not "
             "end on whole {}-column panels",
             parts.front()->file, parts.front()->name, kPanelWidth);
    // Part i fills the panels from first_panel[i]: every part but the last has whole panels.
    std::vector<Source> sources;
    std::vector<Route> routes;
    std::vector<int> first_panel;
    PackedMatrix packed;
    PackedView& v = packed.view_;
    v.format = format;
    for (const io::TensorView* tensor : parts) {
        sources.emplace_back(*tensor, layout);
        routes.push_back(route(*tensor, layout, format));
        first_panel.push_back(v.n / kPanelWidth);
        v.k = sources.back().k();
        v.n += sources.back().n();
        v.block_bias = v.block_bias || routes.back() == Route::kWithBiases;
    }
    v.panels = (v.n + kPanelWidth - 1) / kPanelWidth;
    v.panel_bytes = packed_bytes(format, v.k, kPanelWidth, v.block_bias);
    packed.bytes_ = v.panel_bytes * v.panels;
    packed.storage_ = arena.allocate(packed.bytes_);
    v.data = packed.storage_.get();

    pool.parallel_for(v.panels, 4, [&](std::size_t begin, std::size_t end) {
        std::vector<float> tile(static_cast<std::size_t>(v.k) * kPanelWidth);
        std::vector<float> scratch;
        for (std::size_t p = begin; p < end; ++p) {
            const auto part = static_cast<std::size_t>(
                std::upper_bound(first_panel.begin(), first_panel.end(), static_cast<int>(p)) -
                first_panel.begin() - 1);
            const Source& source = sources[part];
            const int n0 = (static_cast<int>(p) - first_panel[part]) * kPanelWidth;
            const int width = std::min(kPanelWidth, source.n() - n0);
            std::byte* out = packed.storage_.get() + p * v.panel_bytes;
            if (routes[part] == Route::kCopy) {
                repack_panel(*parts[part], format, v.block_bias, n0, width, v.q8_blocks(), out);
                continue;
            }
            if (routes[part] == Route::kWithBiases) {
                minimum_blocks_panel(*parts[part], format, n0, width, v.q8_blocks(), out);
                continue;
            }
            std::fill(tile.begin(), tile.end(), 0.0f);
            source.read_columns(n0, width, tile.data(), scratch);
            switch (format) {
                case WeightFormat::kF32:
                    std::memcpy(out, tile.data(), tile.size() * sizeof(float));
                    break;
                case WeightFormat::kF16:
                case WeightFormat::kBF16:
                    for (std::size_t i = 0; i < tile.size(); ++i) {
                        const std::uint16_t half = format == WeightFormat::kF16
                                                       ? f32_to_f16(tile[i])
                                                       : f32_to_bf16(tile[i]);
                        std::memcpy(out + i * sizeof(half), &half, sizeof(half));
                    }
                    break;
                case WeightFormat::kQ8:
                case WeightFormat::kQ4:
                    quantize_panel(format, v.block_bias, tile.data(), v.k, v.q8_blocks(), out);
                    break;
                case WeightFormat::kAuto:
                    break;
            }
        }
    });
    return packed;
}

float PackedMatrix::element(int k, int n) const {
    const std::byte* panel = view_.panel(n / kPanelWidth);
    const int j = n % kPanelWidth;
    switch (view_.format) {
        case WeightFormat::kF32: {
            float value;
            std::memcpy(&value, panel + (static_cast<std::size_t>(k) * kPanelWidth + j) * 4, 4);
            return value;
        }
        case WeightFormat::kF16:
        case WeightFormat::kBF16: {
            std::uint16_t half;
            std::memcpy(&half, panel + (static_cast<std::size_t>(k) * kPanelWidth + j) * 2, 2);
            return view_.format == WeightFormat::kF16 ? f16_to_f32(half) : bf16_to_f32(half);
        }
        case WeightFormat::kQ8:
        case WeightFormat::kQ4: {
            const std::byte* block =
                panel + static_cast<std::size_t>(k / kQ8Block) * view_.block_bytes();
            std::uint16_t scale, bias = 0;
            std::memcpy(&scale, block + j * 2, 2);
            if (view_.block_bias) std::memcpy(&bias, block + kQ8ScaleBytes + j * 2, 2);
            const auto* values =
                reinterpret_cast<const std::uint8_t*>(block + values_offset(view_.block_bias));
            return static_cast<float>(load_quantized(view_.format, values, k % kQ8Block, j)) *
                       f16_to_f32(scale) +
                   f16_to_f32(bias);
        }
        case WeightFormat::kAuto:
            break;
    }
    return 0.0f;
}

void PackedMatrix::read_output(int n, float* dst) const {
    for (int k = 0; k < view_.k; ++k) dst[k] = element(k, n);
}

}  // namespace llmserve::backend::cpu
