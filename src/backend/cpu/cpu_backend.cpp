// CPU backend: weights packed once into the kernels' panel layout (f32, f16, bf16, q8 or q4),
// kernels of the best instruction-set tier the CPU has, and one pool of threads for every op (no
// BLAS threads competing with ours). A backend runs one forward pass at a time.
#include "backend/cpu/cpu_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/packed_matrix.h"
#include "backend/cpu/row_ops.h"
#include "backend/cpu/worker_pool.h"
#include "common/dtype.h"
#include "common/error.h"

namespace llmserve::backend {
namespace cpu {
namespace {

class CpuBuffer final : public DeviceBuffer {
  public:
    explicit CpuBuffer(std::size_t floats) : storage_(floats * sizeof(float)), size_(floats) {}
    float* data() override { return reinterpret_cast<float*>(storage_.data()); }
    const float* data() const override { return reinterpret_cast<const float*>(storage_.data()); }
    std::size_t size() const override { return size_; }

  private:
    AlignedBuffer storage_;
    std::size_t size_;
};

class CpuWeight final : public Weight {
  public:
    explicit CpuWeight(PackedMatrix packed) : packed_(std::move(packed)) {}
    int in_features() const override { return packed_.view().k; }
    int out_features() const override { return packed_.view().n; }
    std::size_t resident_bytes() const override { return packed_.bytes(); }
    WeightFormat format() const override { return packed_.view().format; }
    const PackedMatrix& packed() const { return packed_; }

  private:
    PackedMatrix packed_;
};

// Per layer and block: keys transposed [kv_dim][block_tokens], then values
// [block_tokens][kv_dim] (see AttentionArgs), as f32 or f16 elements. Pages become resident only
// when a block is used; huge pages where available, since attention streams whole blocks as the
// weights are streamed.
class CpuKvStorage final : public KvStorage {
  public:
    CpuKvStorage(int layers, int blocks, int block_tokens, int kv_dim, KvFormat format)
        : layers_(layers),
          blocks_(blocks),
          block_tokens_(block_tokens),
          kv_dim_(kv_dim),
          format_(format),
          block_elements_(static_cast<std::size_t>(2) * block_tokens * kv_dim),
          storage_(static_cast<std::size_t>(layers) * blocks * block_bytes(), /*huge_pages=*/true) {
    }

    int num_blocks() const override { return blocks_; }
    int block_tokens() const override { return block_tokens_; }
    int kv_dim() const { return kv_dim_; }
    KvFormat format() const { return format_; }
    std::size_t bytes() const override { return storage_.size(); }
    void copy_block(int from, int to) override {
        for (int layer = 0; layer < layers_; ++layer)
            std::memcpy(block(layer, to), block(layer, from), block_bytes());
    }

    std::size_t block_stride() const { return block_elements_; }  // elements
    std::byte* layer_blocks(int layer) {
        return storage_.data() + static_cast<std::size_t>(layer) * blocks_ * block_bytes();
    }
    std::byte* block(int layer, int b) { return layer_blocks(layer) + b * block_bytes(); }

  private:
    std::size_t block_bytes() const { return block_elements_ * element_bytes(format_); }

    int layers_, blocks_, block_tokens_, kv_dim_;
    KvFormat format_;
    std::size_t block_elements_;
    AlignedBuffer storage_;
};

// Writes one position's key (transposed: element c at c * block_tokens + offset) and value (row
// `offset` after the keys) into a KV block.                         k_and_v: [2 kv_dim] (k | v)
template <typename Element>
void store_kv_row(const Element* k_and_v, Element* block, int offset, int block_tokens,
                  int kv_dim) {
    for (int c = 0; c < kv_dim; ++c)
        block[static_cast<std::size_t>(c) * block_tokens + offset] = k_and_v[c];
    std::memcpy(block + static_cast<std::size_t>(block_tokens + offset) * kv_dim, k_and_v + kv_dim,
                kv_dim * sizeof(Element));
}

// Normalises (when the params have q/k norms) and rotates (when they have a rotary embedding)
// every query and key head of one qkv row, in place; `angles` holds rotary_dim floats.
void prepare_qk(float* qkv_row, int position, const AttentionParams& p, float* angles) {
    const int heads = p.n_head + p.n_kv_head;  // q heads, then k heads
    if (p.q_norm != nullptr) {
        for (int h = 0; h < heads; ++h) {
            const DeviceBuffer& gamma = h < p.n_head ? *p.q_norm : *p.k_norm;
            float* head = qkv_row + static_cast<std::ptrdiff_t>(h) * p.head_dim;
            rms_norm_row(head, gamma.data(), p.norm_eps, p.head_dim, head);
        }
    }
    const RotaryParams& r = p.rotary;
    if (r.inv_freq == nullptr) return;
    const int half = r.rotary_dim / 2;
    rotary_angles(position, r.inv_freq->data(), half, r.attention_factor, angles, angles + half);
    for (int h = 0; h < heads; ++h)
        rotate_head(qkv_row + static_cast<std::ptrdiff_t>(h) * p.head_dim, angles, angles + half,
                    half);
}

const CpuWeight& as_cpu(const Weight& w) {
    return static_cast<const CpuWeight&>(w);
}

// Once a tensor has been converted, its checkpoint pages are not needed: let the kernel reclaim
// them so the mapping and the packed copy are not both resident. MADV_PAGEOUT never loses data
// (file pages are re-read if touched again) and is only advice: failure is harmless.
void release_source_pages(std::span<const std::byte> bytes) {
    const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
    const auto begin = (reinterpret_cast<std::uintptr_t>(bytes.data()) + page - 1) / page * page;
    const auto end = (reinterpret_cast<std::uintptr_t>(bytes.data()) + bytes.size()) / page * page;
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);
}

// kAuto keeps the stored type where a kernel computes with it: GGUF's Q8_0, Q5_0 and Q4_0 blocks
// are q8 and q4 blocks as they stand (same 32 values per fp16 scale), Q5_1 is a q8 block with
// block biases as it stands, Q4_K and Q5_K are q4 and q8 blocks with block biases (only their
// scales and minimums rounded to f16). Q6_K (16-value
// sub-blocks, two int8 scales per 32 values) has no such exact form and is requantized to q8,
// adding at most 1/8 of its own step.
WeightFormat resolve(WeightFormat format, DType stored) {
    if (format != WeightFormat::kAuto) return format;
    switch (stored) {
        case DType::kF16:
            return WeightFormat::kF16;
        case DType::kBF16:
            return WeightFormat::kBF16;
        case DType::kQ8_0:
        case DType::kQ5_0:
        case DType::kQ5_1:
        case DType::kQ5_K:
        case DType::kQ6_K:
            return WeightFormat::kQ8;
        case DType::kQ4_0:
        case DType::kQ4_K:
            return WeightFormat::kQ4;
        default:
            break;
    }
    return WeightFormat::kF32;
}

// The one format of a matrix made of parts: what each part resolves to when they agree, q8 when
// they are all q8 or q4 (q8 holds every block type), else f32.
WeightFormat resolve(WeightFormat format, std::span<const io::TensorView* const> parts) {
    if (format != WeightFormat::kAuto) return format;
    const WeightFormat first = resolve(format, parts.front()->dtype);
    bool same = true, integer = true;
    for (const io::TensorView* part : parts) {
        const WeightFormat each = resolve(format, part->dtype);
        same = same && each == first;
        integer = integer && (each == WeightFormat::kQ8 || each == WeightFormat::kQ4);
    }
    return same ? first : integer ? WeightFormat::kQ8 : WeightFormat::kF32;
}

// Splits `count` items into about eight chunks per thread (so a thread that is descheduled for
// a while delays the others little), each at least `min_grain` long.
std::size_t grain_for(std::size_t count, int threads, std::size_t min_grain) {
    return std::max(min_grain, count / (static_cast<std::size_t>(threads) * 8));
}

constexpr std::size_t kMinChunkBytes = std::size_t{64} << 10;

class CpuBackend final : public Backend {
  public:
    CpuBackend(int threads, Isa isa) : kernels_(kernel_table(isa)), pool_(threads) {}

    std::string name() const override { return "cpu"; }
    int threads() const override { return pool_.size(); }

    std::unique_ptr<DeviceBuffer> allocate(std::size_t floats) override {
        return std::make_unique<CpuBuffer>(floats);
    }
    using Backend::allocate_kv;
    std::unique_ptr<KvStorage> allocate_kv(int layers, int blocks, int block_tokens, int kv_dim,
                                           KvFormat format) override {
        return std::make_unique<CpuKvStorage>(layers, blocks, block_tokens, kv_dim, format);
    }

    std::unique_ptr<Weight> upload_matrix(const io::TensorView& tensor, MatrixLayout layout,
                                          WeightFormat format) override {
        auto weight = std::make_unique<CpuWeight>(
            PackedMatrix::pack(tensor, layout, resolve(format, tensor.dtype), pool_, arena_));
        release_source_pages(tensor.data);
        return weight;
    }

    std::unique_ptr<Weight> upload_matrix_parts(std::span<const io::TensorView* const> parts,
                                                WeightFormat format) override {
        if (!PackedMatrix::packs_as_parts(parts, MatrixLayout::kOutIn)) return nullptr;
        auto weight = std::make_unique<CpuWeight>(
            PackedMatrix::pack(parts, MatrixLayout::kOutIn, resolve(format, parts), pool_, arena_));
        for (const io::TensorView* part : parts) release_source_pages(part->data);
        return weight;
    }

    std::unique_ptr<DeviceBuffer> upload_vector(const io::TensorView& tensor) override {
        const auto count = static_cast<std::size_t>(tensor.numel());
        auto buffer = std::make_unique<CpuBuffer>(count);
        convert_to_f32(tensor.dtype, tensor.data.data(), count, buffer->data());
        return buffer;
    }

    void embedding(const Weight& table, std::span<const std::int32_t> ids,
                   MatrixView out) override {
        const PackedMatrix& packed = as_cpu(table).packed();
        pool_.parallel_for(ids.size(), 16, [&](std::size_t begin, std::size_t end) {
            for (std::size_t r = begin; r < end; ++r)
                packed.read_output(ids[r], out.row(static_cast<int>(r)));
        });
    }

    using Backend::linear;
    void linear(MatrixView x, const Weight& weight, const LinearEpilogue& epilogue,
                MatrixView y) override {
        const PackedView& w = as_cpu(weight).packed().view();
        check_linear(x, w.k, w.n, epilogue, y);
        if (x.rows == 0) return;
        GemmArgs args;
        args.w = &w;
        args.x = x.data;
        args.x_stride = x.cols;
        args.bias = epilogue.bias != nullptr ? epilogue.bias->data() : nullptr;
        args.y = y.data;
        args.y_stride = y.cols;
        args.accumulate = epilogue.accumulate;
        args.m = x.rows;
        auto* gemm = kernels_.gemm_f32;
        switch (w.format) {
            case WeightFormat::kF16:
                gemm = kernels_.gemm_f16;
                break;
            case WeightFormat::kBF16:
                gemm = kernels_.gemm_bf16;
                break;
            case WeightFormat::kQ8:
                gemm = kernels_.gemm_q8;
                args.xq = &quantize(x, w.q8_blocks());
                break;
            case WeightFormat::kQ4:
                gemm = kernels_.gemm_q4;
                args.xq = &quantize(x, w.q8_blocks());
                break;
            default:
                break;
        }
        // Up to eight chunks per thread (a thread the OS deschedules for a while then delays
        // the others little), but none under ~64 KiB of weights: smaller ones cost more in
        // claiming and in restarting the hardware prefetcher than they gain. Chunks differ by at
        // most one panel, so threads that run at the same speed finish together.
        const auto threads = static_cast<std::size_t>(pool_.size());
        const std::size_t per_thread =
            std::clamp<std::size_t>(w.panel_bytes * w.panels / (threads * kMinChunkBytes), 1, 8);
        const std::size_t chunks = std::min<std::size_t>(w.panels, threads * per_thread);
        const bool sixteen_bit = w.format == WeightFormat::kF16 || w.format == WeightFormat::kBF16;
        pool_.parallel_for(chunks, 1, [&](int worker, std::size_t begin, std::size_t end) {
            GemmArgs chunk_args = args;
            if (sixteen_bit) chunk_args.panel_scratch = panel_scratch(worker, w.k);
            for (std::size_t chunk = begin; chunk < end; ++chunk) {
                const int panel_begin = static_cast<int>(chunk * w.panels / chunks);
                const int panel_end = static_cast<int>((chunk + 1) * w.panels / chunks);
                gemm(chunk_args, panel_begin, panel_end);
                // While the chunk's columns are still in this core's cache.
                if (epilogue.activation) {
                    const int col_begin = panel_begin * kPanelWidth;
                    const int cols = std::min(panel_end * kPanelWidth, w.n) - col_begin;
                    for (int r = 0; r < x.rows; ++r)
                        kernels_.activation(*epilogue.activation, y.row(r) + col_begin,
                                            static_cast<std::size_t>(cols));
                }
            }
        });
    }

    void layer_norm(MatrixView x, const DeviceBuffer& gamma, const DeviceBuffer& beta, float eps,
                    MatrixView y) override {
        pool_.parallel_for(x.rows, 8, [&](std::size_t begin, std::size_t end) {
            for (std::size_t r = begin; r < end; ++r)
                kernels_.layer_norm(x.row(static_cast<int>(r)), gamma.data(), beta.data(), eps,
                                    x.cols, y.row(static_cast<int>(r)));
        });
    }

    void rms_norm(MatrixView x, const DeviceBuffer& gamma, float eps, MatrixView y) override {
        pool_.parallel_for(x.rows, 8, [&](std::size_t begin, std::size_t end) {
            for (std::size_t r = begin; r < end; ++r)
                rms_norm_row(x.row(static_cast<int>(r)), gamma.data(), eps, x.cols,
                             y.row(static_cast<int>(r)));
        });
    }

    void gated_activation(MatrixView gate_up, Activation activation, MatrixView out) override {
        const int width = out.cols;
        if (gate_up.cols != 2 * width || gate_up.rows != out.rows)
            fail(ErrorCode::kInternal, "gated_activation: gate_up [{}, {}] -> out [{}, {}]",
                 gate_up.rows, gate_up.cols, out.rows, out.cols);
        pool_.parallel_for(out.rows, 1, [&](std::size_t begin, std::size_t end) {
            for (std::size_t r = begin; r < end; ++r) {
                const float* gate = gate_up.row(static_cast<int>(r));
                float* y = out.row(static_cast<int>(r));
                std::memcpy(y, gate, width * sizeof(float));
                kernels_.activation(activation, y, static_cast<std::size_t>(width));
                multiply(y, gate + width, width);
            }
        });
    }

    void add(MatrixView x, MatrixView y) override {
        const std::size_t total = static_cast<std::size_t>(x.rows) * x.cols;
        pool_.parallel_for(total, grain_for(total, pool_.size(), 1 << 14),
                           [&](std::size_t begin, std::size_t end) {
                               kernels_.add(x.data + begin, y.data + begin, end - begin);
                           });
    }

    void attention(MatrixView qkv, const AttentionBatch& batch, KvStorage& storage, int layer,
                   const AttentionParams& params, MatrixView out) override {
        auto& kv = static_cast<CpuKvStorage&>(storage);
        check_attention(qkv, params, kv.kv_dim(), out);
        const int kv_dim = kv.kv_dim();
        const int bt = batch.block_tokens;
        if (bt != kv.block_tokens())
            fail(ErrorCode::kInternal, "attention: {}-token blocks for a cache of {}-token blocks",
                 bt, kv.block_tokens());
        auto block_of = [&](int row) {
            return batch.block_tables[batch.row_sequence[row]][batch.positions[row] / bt];
        };
        // Normalise and rotate q and k, then store every row's key (transposed) and value first:
        // rows attend to earlier rows of the same batch.
        const bool half = kv.format() == KvFormat::kF16;
        const int q_width = params.n_head * params.head_dim;
        pool_.parallel_for(qkv.rows, 32, [&](std::size_t begin, std::size_t end) {
            std::vector<std::uint16_t> halves(half ? 2 * kv_dim : 0);
            std::vector<float> angles(params.rotary.rotary_dim);
            for (std::size_t r = begin; r < end; ++r) {
                const int row = static_cast<int>(r);
                prepare_qk(qkv.row(row), batch.positions[row], params, angles.data());
                const int offset = batch.positions[row] % bt;
                const float* k_and_v = qkv.row(row) + q_width;
                std::byte* block = kv.block(layer, block_of(row));
                if (half) {
                    kernels_.f32_to_f16(k_and_v, halves.size(), halves.data());
                    store_kv_row(halves.data(), reinterpret_cast<std::uint16_t*>(block), offset, bt,
                                 kv_dim);
                } else {
                    store_kv_row(k_and_v, reinterpret_cast<float*>(block), offset, bt, kv_dim);
                }
            }
        });

        // Tiles of up to kAttentionTileRows consecutive rows of one sequence, times heads. Under
        // a sliding window, rows whose window has moved past position 0 get a tile each (their
        // first key differs).
        const int window = params.window;
        auto first_key = [&](int row) {
            return window > 0 ? std::max(0, batch.positions[row] - window + 1) : 0;
        };
        tiles_.clear();
        for (int row = 0; row < qkv.rows;) {
            int rows = 1;
            if (first_key(row) == 0)
                while (rows < kAttentionTileRows && row + rows < qkv.rows &&
                       batch.row_sequence[row + rows] == batch.row_sequence[row] &&
                       batch.positions[row + rows] == batch.positions[row] + rows &&
                       first_key(row + rows) == 0)
                    ++rows;
            const int* table = batch.block_tables[batch.row_sequence[row]].data();
            for (int head = 0; head < params.n_head; ++head)
                tiles_.push_back({row, rows, head, table, first_key(row)});
            row += rows;
        }
        AttentionArgs args;
        args.qkv = qkv.data;
        args.qkv_stride = qkv.cols;
        args.out = out.data;
        args.out_stride = out.cols;
        args.positions = batch.positions.data();
        args.kv_blocks = kv.layer_blocks(layer);
        args.kv_format = kv.format();
        args.block_stride = kv.block_stride();
        args.block_tokens = bt;
        args.kv_dim = kv_dim;
        args.head_dim = params.head_dim;
        args.group = params.n_head / params.n_kv_head;
        args.scale = params.scale;
        pool_.parallel_for(tiles_.size(), grain_for(tiles_.size(), pool_.size(), 1),
                           [&](std::size_t begin, std::size_t end) {
                               for (std::size_t t = begin; t < end; ++t)
                                   kernels_.attention(args, tiles_[t]);
                           });
    }

    void gather_rows(MatrixView x, std::span<const int> rows, MatrixView out) override {
        for (std::size_t i = 0; i < rows.size(); ++i)
            std::memcpy(out.row(static_cast<int>(i)), x.row(rows[i]), x.cols * sizeof(float));
    }

    void copy_to_host(MatrixView x, float* host) override {
        std::memcpy(host, x.data, static_cast<std::size_t>(x.rows) * x.cols * sizeof(float));
    }
    void linear_to_host(MatrixView x, const Weight& w, MatrixView staging, float* host) override {
        linear(x, w, nullptr, MatrixView{host, staging.rows, staging.cols});
    }

  private:
    // Quantizes x into the reusable q8 activation buffers.
    const QuantizedRows& quantize(MatrixView x, int blocks) {
        const std::size_t slots = static_cast<std::size_t>(x.rows) * blocks;
        if (q8_values_.size() < slots * kQ8Block) {
            q8_values_.resize(slots * kQ8Block);
            q8_scales_.resize(slots);
            q8_offsets_.resize(slots);
        }
        q8_rows_ = {x.rows, blocks, q8_values_.data(), q8_scales_.data(), q8_offsets_.data()};
        pool_.parallel_for(x.rows, 8, [&](std::size_t begin, std::size_t end) {
            kernels_.quantize_rows(x.data, x.cols, x.cols, static_cast<int>(begin),
                                   static_cast<int>(end), q8_rows_);
        });
        return q8_rows_;
    }

    // Worker `worker`'s f32 copy of one panel of k inputs, kept for the next call: allocated per
    // call, these copies wandered through the heap's free space and left it all resident.
    float* panel_scratch(int worker, int k) {
        AlignedBuffer& scratch = panel_scratch_[worker];
        const std::size_t bytes = static_cast<std::size_t>(k) * kPanelWidth * sizeof(float);
        if (scratch.size() < bytes) scratch = AlignedBuffer(bytes);
        return reinterpret_cast<float*>(scratch.data());
    }

    const KernelTable& kernels_;
    WorkerPool pool_;
    WeightArena arena_;
    // Scratch reused across calls (one forward pass at a time).
    std::vector<AlignedBuffer> panel_scratch_ = std::vector<AlignedBuffer>(pool_.size());
    std::vector<AttentionTile> tiles_;
    std::vector<std::int8_t> q8_values_;
    std::vector<float> q8_scales_;
    std::vector<std::int32_t> q8_offsets_;
    QuantizedRows q8_rows_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads, Isa isa) {
    return std::make_unique<CpuBackend>(threads, isa);
}

}  // namespace cpu

std::unique_ptr<Backend> make_cpu_backend(int threads) {
    return cpu::make_cpu_backend(threads, cpu::default_isa());
}

}  // namespace llmserve::backend
