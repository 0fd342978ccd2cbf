// The small interface the model drives: device memory, weight upload and the handful of ops a
// decoder forward pass needs (GPT-2, Llama, Mistral, Qwen2/3: norms, linear products, RoPE, paged
// attention). Kernels never know the model; the model never knows the device or how a weight is
// stored (f32, f16, bf16, quantized: the backend decides at upload and dispatches inside `linear`).
// Shapes are row-major [rows, cols]. Notation in the shape comments: M rows (tokens), C the
// residual width, H query heads, KV key/value heads, D head_dim, I the MLP width.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "io/safetensors.h"

namespace llmserve::backend {

// How weights are kept for compute. kAuto: the stored dtype, unconverted. f16 and bf16 weights are
// widened to f32 inside the kernels (all arithmetic is f32). kQ8: int8 weights with one scale per
// 32 inputs of an output (llama.cpp's Q8_0), multiplied with activations quantized the same way.
// kQ4: 4-bit weights in [-8, 7], one scale per 32 inputs of an output (llama.cpp's Q4_0 layout,
// so Q4_0 files load as they stand), multiplied with q8 activations. On the CPU, q8 and q4 blocks
// may also carry one additive bias per output (GGUF's Q4_K and Q5_K, w = d * q - m, kept exactly).
enum class WeightFormat { kAuto, kF32, kF16, kBF16, kQ8, kQ4 };
WeightFormat parse_weight_format(
    std::string_view text);  // "auto", "f32", "f16", "bf16", "q8", "q4"; kInvalidArgument otherwise
std::string_view to_string(WeightFormat format);

// How the KV cache keeps keys and values. kF16 halves its memory and the bytes attention reads
// (values rounded to 11 significant bits; arithmetic stays f32).
enum class KvFormat { kF32, kF16 };
KvFormat parse_kv_format(std::string_view text);  // "f32", "f16"; kInvalidArgument otherwise
std::string_view to_string(KvFormat format);
std::size_t element_bytes(KvFormat format);

enum class Activation { kGeluNew, kGelu, kGeluFast, kRelu, kSilu };

// Float32 memory on the backend's device. The model and engine hold these; only the backend reads
// `data()`.
class DeviceBuffer {
  public:
    virtual ~DeviceBuffer() = default;
    virtual float* data() = 0;
    virtual const float* data() const = 0;
    virtual std::size_t size() const = 0;  // floats
};

// Float32 host memory that results are copied into (page-locked where that makes the device's
// copies faster). Its contents are undefined until written; pages are touched only when used.
class HostBuffer {
  public:
    virtual ~HostBuffer() = default;
    virtual float* data() = 0;
    virtual std::size_t size() const = 0;  // floats
};

// A non-owning [rows, cols] view into a DeviceBuffer (row stride = cols).
struct MatrixView {
    float* data = nullptr;
    int rows = 0;
    int cols = 0;
    float* row(int r) const { return data + static_cast<std::ptrdiff_t>(r) * cols; }
};

// A weight matrix for y = x·W, in whatever format the backend chose. in_features x out_features.
class Weight {
  public:
    virtual ~Weight() = default;
    virtual int in_features() const = 0;
    virtual int out_features() const = 0;
    virtual std::size_t resident_bytes() const = 0;  // memory it occupies beyond the mapped file
    virtual WeightFormat format() const = 0;         // never kAuto
};

// How a 2-D tensor is laid out in the checkpoint.
enum class MatrixLayout {
    kInOut,  // [in, out]: Hugging Face Conv1D (GPT-2's attention and MLP weights)
    kOutIn,  // [out, in]: nn.Linear / embeddings used as the output projection (lm_head = wte)
};

// Which cached positions each batch row attends to: row r belongs to sequence row_sequence[r] and
// sits at positions[r]; a sequence's keys/values live in the KV blocks listed in its block table.
struct AttentionBatch {
    std::span<const int> positions;     // [rows]
    std::span<const int> row_sequence;  // [rows] index into block_tables
    std::span<const std::span<const int>> block_tables;
    int block_tokens = 16;
};

// Keys and values of every layer for a pool of blocks: per layer, K and V of [blocks, block_tokens,
// kv_dim] with kv_dim = KV * D (n_embd for GPT-2).
class KvStorage {
  public:
    virtual ~KvStorage() = default;
    virtual int num_blocks() const = 0;
    virtual int block_tokens() const = 0;
    virtual std::size_t bytes() const = 0;
    // Copies block `from` to block `to` in every layer (copy-on-write of a shared partial block).
    virtual void copy_block(int from, int to) = 0;
};

// What linear does with the product x·W before it lands in y: adds the bias, applies the
// activation, then either stores the result or (accumulate) adds it to what y holds, the way a
// transformer block adds a projection to its residual stream. Fusing these into the product saves
// a pass over y per step (and, on a GPU, a kernel launch each). An activation is never combined
// with accumulate. The order of the additions is the backend's (the CPU adds the bias to the
// product first, the CUDA backend last).
struct LinearEpilogue {
    const DeviceBuffer* bias = nullptr;  // [out] or null
    std::optional<Activation> activation = std::nullopt;
    bool accumulate = false;
};

// The shape of one forward pass, for backends that replay recorded steps (CUDA graphs): every
// pass of the same shape issues the same operations on the same buffers.
struct StepShape {
    int rows = 0;         // batch rows (tokens)
    int logits_rows = 0;  // rows whose logits are copied to the host
};

// Rotary position embedding (transformers' rotate_half convention: dimension i < R/2 pairs with
// i + R/2, R = rotary_dim <= D; dimensions past R are left alone). The angle of frequency i at
// position p is float32(p * inv_freq[i]); cos and sin are computed in float32 and multiplied by
// attention_factor (yarn's scaling; 1 otherwise).
struct RotaryParams {
    const DeviceBuffer* inv_freq = nullptr;  // [R / 2]; null: no rotary embedding
    int rotary_dim = 0;
    float attention_factor = 1.0f;
};

struct AttentionParams {
    int n_head = 0;      // H
    int n_kv_head = 0;   // KV: H is a multiple; query head h reads key/value head h / (H / KV)
    int head_dim = 0;    // D
    float scale = 1.0f;  // multiplies q·k (1/sqrt(D), times 1/(layer+1) when the config asks)
    // A query at position p attends to keys at positions (p - window, p]; 0: to all of [0, p].
    int window = 0;
    // Per-head RMSNorm of q and k (weights [D]) before the rotary embedding (Qwen3); null: none.
    const DeviceBuffer* q_norm = nullptr;
    const DeviceBuffer* k_norm = nullptr;
    float norm_eps = 1e-6f;
    RotaryParams rotary = {};
};

class Backend {
  public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;  // "cpu", "cuda:0"
    virtual int threads() const = 0;

    virtual std::unique_ptr<DeviceBuffer> allocate(std::size_t floats) = 0;
    // Host memory for results (logits) that copy_to_host / linear_to_host fill fastest. By
    // default: plain heap memory.
    virtual std::unique_ptr<HostBuffer> allocate_host(std::size_t floats);
    // A cache of `kv_dim` (KV * D) floats per token, layer and K or V. Throws kInvalidArgument
    // naming the format when this backend cannot keep the cache in it.
    virtual std::unique_ptr<KvStorage> allocate_kv(int layers, int blocks, int block_tokens,
                                                   int kv_dim, KvFormat format) = 0;
    std::unique_ptr<KvStorage> allocate_kv(int layers, int blocks, int block_tokens, int kv_dim) {
        return allocate_kv(layers, blocks, block_tokens, kv_dim, KvFormat::kF32);
    }

    // Weights are read from the checkpoint view once and copied (converted, packed); the view need
    // not outlive the call.
    virtual std::unique_ptr<Weight> upload_matrix(const io::TensorView& tensor, MatrixLayout layout,
                                                  WeightFormat format) = 0;
    // `parts` ([out_i, in] each) as one matrix concatenated along the outputs, each part kept
    // in its own stored type as far as `format` allows (a GGUF mixture's fused q, k and v of
    // different block types). Null where the backend cannot: the caller then uploads the
    // concatenation (see model.cpp).
    virtual std::unique_ptr<Weight> upload_matrix_parts(
        std::span<const io::TensorView* const> /*parts*/, WeightFormat /*format*/) {
        return nullptr;
    }
    virtual std::unique_ptr<DeviceBuffer> upload_vector(const io::TensorView& tensor) = 0;

    // out[r] = table row ids[r] (as float32).                              ids: [rows]  out: [rows,
    // out_features]
    virtual void embedding(const Weight& table, std::span<const std::int32_t> ids,
                           MatrixView out) = 0;
    // y = epilogue(x·W), see LinearEpilogue.     x: [M, in]  y: [M, out], never aliasing x
    virtual void linear(MatrixView x, const Weight& w, const LinearEpilogue& epilogue,
                        MatrixView y) = 0;
    void linear(MatrixView x, const Weight& w, const DeviceBuffer* bias, MatrixView y) {
        linear(x, w, LinearEpilogue{.bias = bias}, y);
    }
    // y = (x - mean) / sqrt(var + eps) * gamma + beta, per row.          x, y: [M, C] (may alias)
    virtual void layer_norm(MatrixView x, const DeviceBuffer& gamma, const DeviceBuffer& beta,
                            float eps, MatrixView y) = 0;
    // y = x / sqrt(mean(x²) + eps) * gamma, per row, in float32.     x, y: [M, C] (may alias)
    virtual void rms_norm(MatrixView x, const DeviceBuffer& gamma, float eps, MatrixView y) = 0;
    // out = activation(gate) * up, the gated MLP (SwiGLU for silu).
    //                                          gate_up: [M, 2I] (gate | up)   out: [M, I]
    virtual void gated_activation(MatrixView gate_up, Activation activation, MatrixView out) = 0;
    virtual void add(MatrixView x, MatrixView y) = 0;  // x += y, same shape
    // Per row: normalises q and k per head and rotates them when `params` asks (in place in qkv),
    // writes k, v into the cache at the row's position, then causal attention over the sequence's
    // cached positions [0, position] (or the window's). Validated by check_attention.
    //                                 qkv: [M, (H + 2 KV) D] (q | k | v)   out: [M, H D]
    virtual void attention(MatrixView qkv, const AttentionBatch& batch, KvStorage& kv, int layer,
                           const AttentionParams& params, MatrixView out) = 0;
    // out[i] = x[rows[i]].                                                   out: [rows.size(), C]
    virtual void gather_rows(MatrixView x, std::span<const int> rows, MatrixView out) = 0;
    virtual void copy_to_host(MatrixView x, float* host) = 0;
    // host = x·W, delivered to host memory (the output projection, whose logits the engine
    // samples). `staging` (y's shape) holds the product first where device memory is not host
    // memory; a backend computing in host memory writes `host` directly and saves the copy.
    //                                           x: [M, in]  staging: [M, out]  host: M * out floats
    virtual void linear_to_host(MatrixView x, const Weight& w, MatrixView staging, float* host) {
        linear(x, w, nullptr, staging);
        copy_to_host(staging, host);
    }
    // Issues one forward pass: `issue` makes the pass's calls, all of them on this thread and none
    // of them on another thread meanwhile. A backend may record the calls of a shape once and
    // replay them for later passes of that shape (CUDA graphs); host copies made inside
    // `issue` are then complete when run_step returns, not before, and hold the buffer as the pass
    // leaves it (so copy only what the pass no longer writes). By default: issue().
    virtual void run_step(const StepShape& shape, const std::function<void()>& issue) {
        (void)shape;
        issue();
    }
};

// Throws Error(kInternal) naming the shapes when x [M, in], W [in_features, out_features], the
// epilogue and y [M, out] do not fit together (every backend's linear checks this first).
void check_linear(MatrixView x, int in_features, int out_features, const LinearEpilogue& epilogue,
                  MatrixView y);

// Throws Error(kInternal) naming the shapes when qkv, out, the heads, the rotary and norm
// parameters and a cache of `kv_dim` floats per token do not fit together (every backend's
// attention checks this first).
void check_attention(MatrixView qkv, const AttentionParams& params, int kv_dim, MatrixView out);

// The CPU backend with `threads` worker threads (0 = one per core).
std::unique_ptr<Backend> make_cpu_backend(int threads);

}  // namespace llmserve::backend
