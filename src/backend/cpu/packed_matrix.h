// Weights in the kernels' panel layout (see kernels.h): converted from a checkpoint tensor once, at
// load, whatever its dtype and orientation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/worker_pool.h"
#include "io/safetensors.h"

namespace llmserve::backend::cpu {

// IEEE round-to-nearest-even conversions (overflow to infinity, subnormals kept, NaN stays NaN).
std::uint16_t f32_to_f16(float value);
std::uint16_t f32_to_bf16(float value);

// Bytes a k x n (in x out) matrix occupies packed as `format` (not kAuto), padding included;
// `block_bias`: q8 / q4 blocks with biases.
std::size_t packed_bytes(WeightFormat format, int k, int n, bool block_bias = false);

// Zero-filled, 64-byte aligned memory. Buffers of 2 MiB and more are fresh anonymous mappings,
// 2 MiB aligned: their pages become resident only where written (a KV cache or a logits buffer
// costs what is used), and weights may ask for transparent huge pages (fewer TLB misses while
// streaming them).
class AlignedBuffer {
  public:
    AlignedBuffer() = default;
    explicit AlignedBuffer(std::size_t bytes, bool huge_pages = false);
    AlignedBuffer(AlignedBuffer&& other) noexcept;
    AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;
    ~AlignedBuffer();

    std::byte* data() const { return data_; }
    std::size_t size() const { return size_; }

  private:
    void release() noexcept;
    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t mapped_ = 0;  // length of the mapping; 0 when from the heap
};

// Memory for packed weights: regions of 64 MiB backed by transparent huge pages, handed out in
// 64-byte aligned pieces. A matrix streamed from ordinary 4 KiB pages costs a TLB miss per page
// and stops the hardware prefetchers at every page boundary: the small matrices of a layer (under
// 2 MiB each in q8) streamed 7-15% slower from ordinary pages. One allocation at a time.
class WeightArena {
  public:
    // Zero-filled, 64-byte aligned; the memory lives as long as the returned pointer or a copy.
    std::shared_ptr<std::byte> allocate(std::size_t bytes);

  private:
    std::shared_ptr<AlignedBuffer> region_;
    std::size_t used_ = 0;
};

class PackedMatrix {
  public:
    // Packs a 2-D f32/f16/bf16 tensor stored as `layout` into `format` (not kAuto), in memory
    // from `arena`, using `pool` for the conversion. q8: per output column and block of 32 inputs,
    // d = max|w| / 127 rounded to f16, q = round(w * (1 / d)) clamped to [-127, 127]. q4: d = -w_e
    // / 8 for the w_e of largest magnitude, rounded to f16, q = round(w * (1 / d)) clamped to
    // [-8, 7]. GGUF Q4_0 (q8, q4), Q8_0 and Q5_0 (q8) tensors are copied block for block instead,
    // and Q4_K (q8, q4), Q5_1 and Q5_K (q8) into blocks with biases (kernels.h), rounding only
    // the K-quants' scales and minimums to f16; Q6_K is requantized from its exact values.
    static PackedMatrix pack(const io::TensorView& tensor, MatrixLayout layout, WeightFormat format,
                             WorkerPool& pool, WeightArena& arena);
    // One matrix of `parts` concatenated along the outputs, each packed from its own type into
    // its own panels (packs_as_parts() must hold). With block biases where any part needs them.
    static PackedMatrix pack(std::span<const io::TensorView* const> parts, MatrixLayout layout,
                             WeightFormat format, WorkerPool& pool, WeightArena& arena);
    // Whether `parts` can be packed as one matrix: same inputs, every part but the last a whole
    // number of panels (a single part always can).
    static bool packs_as_parts(std::span<const io::TensorView* const> parts, MatrixLayout layout);

    const PackedView& view() const { return view_; }
    std::size_t bytes() const { return bytes_; }
    // The value the kernels multiply by for W[k, n] (dequantized for q8 and q4).
    float element(int k, int n) const;
    // element(k, n) for every k into dst[k]: row n of an [out, in] embedding table.
    void read_output(int n, float* dst) const;

  private:
    PackedView view_;
    std::shared_ptr<std::byte> storage_;
    std::size_t bytes_ = 0;
};

}  // namespace llmserve::backend::cpu
