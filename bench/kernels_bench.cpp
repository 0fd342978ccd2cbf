// CPU kernels at GPT-2 124M shapes, per instruction-set tier (the first argument: 0 scalar,
// 1 avx2, 2 avx512; tiers this CPU lacks are skipped), on one thread unless the name says "Pool":
//   BM_Gemm/<isa>/<format>/M/K/N   one weight matrix; format 0 f32, 1 f16, 2 bf16, 3 q8, 4 q4,
//                                   5 q4 with block biases (a Q4_K tensor), 6 q8 with block
//                                   biases (Q5_K); q8 and q4 include quantizing the activations
//   BM_OpenBlasSgemm/M/K/N          OpenBLAS on one thread, the yardstick for f32
//   BM_PoolLinear/<format>/M/K/N    the backend's linear() on every core (decode: M = 1)
//   BM_Attention/<isa>/rows/context one layer's attention, 12 heads of 64: prefill (rows =
//                                   context) or decode (1 row)
//   BM_PoolRegion                   one parallel region with no work: the pool's fixed cost
//   BM_LayerNorm, BM_Gelu           768 and 3072 wide rows
// Counters: FLOP/s (2·M·K·N per product) and weight bytes streamed per second.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/packed_matrix.h"
#include "common/dtype.h"

namespace llmserve::backend::cpu {
namespace {

constexpr Isa kIsas[] = {Isa::kScalar, Isa::kAvx2, Isa::kAvx512};
constexpr WeightFormat kFormats[] = {WeightFormat::kF32, WeightFormat::kF16, WeightFormat::kBF16,
                                     WeightFormat::kQ8, WeightFormat::kQ4};

std::vector<float> random_values(std::size_t count, float scale, unsigned seed) {
    std::mt19937 engine(seed);
    std::uniform_real_distribution<float> uniform(-scale, scale);
    std::vector<float> values(count);
    for (float& v : values) v = uniform(engine);
    return values;
}

io::TensorView tensor_view(const std::vector<float>& values, std::int64_t rows, std::int64_t cols) {
    io::TensorView view;
    view.name = "bench";
    view.dtype = DType::kF32;
    view.shape = {rows, cols};
    view.data = std::as_bytes(std::span(values));
    view.file = "<bench>";
    return view;
}

// An [n, k] tensor of random `type` (Q4_K or Q5_K) blocks with sane fp16 d and dmin, so that its
// weights are of the magnitude of random_values(..., 0.05f, ...).
io::TensorView k_quant_view(DType type, std::vector<std::byte>& bytes, int k, int n) {
    std::mt19937 engine(3);
    bytes.resize(static_cast<std::size_t>(n) * row_bytes(type, k));
    for (auto& b : bytes) b = static_cast<std::byte>(engine() & 0xff);
    const std::uint16_t d = f32_to_f16(type == DType::kQ4_K ? 2e-4f : 1e-4f);
    for (std::size_t at = 0; at < bytes.size(); at += block_bytes(type)) {
        std::memcpy(bytes.data() + at, &d, 2);
        std::memcpy(bytes.data() + at + 2, &d, 2);
    }
    io::TensorView view;
    view.name = "bench";
    view.dtype = type;
    view.shape = {n, k};
    view.data = bytes;
    view.file = "<bench>";
    return view;
}

// Skips the benchmark (returns false) when the CPU lacks the tier of argument `index`.
bool select_isa(benchmark::State& state, int index, Isa& isa) {
    isa = kIsas[state.range(index)];
    if (isa_supported(isa)) return true;
    state.SkipWithError("instruction set not supported by this CPU");
    return false;
}

void BM_Gemm(benchmark::State& state) {
    Isa isa;
    if (!select_isa(state, 0, isa)) return;
    const int format_index = static_cast<int>(state.range(1));
    const WeightFormat format = format_index < 5    ? kFormats[format_index]
                                : format_index == 5 ? WeightFormat::kQ4
                                                    : WeightFormat::kQ8;
    const int m = static_cast<int>(state.range(2)), k = static_cast<int>(state.range(3)),
              n = static_cast<int>(state.range(4));
    WorkerPool pool(1);
    WeightArena arena;
    const auto weights = random_values(static_cast<std::size_t>(k) * n, 0.05f, 1);
    std::vector<std::byte> blocks;
    const PackedMatrix packed =
        format_index < 5
            ? PackedMatrix::pack(tensor_view(weights, k, n), MatrixLayout::kInOut, format, pool,
                                 arena)
            : PackedMatrix::pack(
                  k_quant_view(format_index == 5 ? DType::kQ4_K : DType::kQ5_K, blocks, k, n),
                  MatrixLayout::kOutIn, format, pool, arena);
    const auto x = random_values(static_cast<std::size_t>(m) * k, 1.0f, 2);
    std::vector<float> y(static_cast<std::size_t>(m) * n);
    const KernelTable& kernels = kernel_table(isa);
    const int q_blocks = packed.view().q8_blocks();
    std::vector<std::int8_t> q_values(static_cast<std::size_t>(m) * q_blocks * kQ8Block);
    std::vector<float> q_scales(static_cast<std::size_t>(m) * q_blocks);
    std::vector<std::int32_t> q_offsets(q_scales.size());
    const QuantizedRows xq{m, q_blocks, q_values.data(), q_scales.data(), q_offsets.data()};
    GemmArgs args{&packed.view(), x.data(), k, &xq, nullptr, y.data(), n, m};
    auto* gemm = format == WeightFormat::kF32    ? kernels.gemm_f32
                 : format == WeightFormat::kF16  ? kernels.gemm_f16
                 : format == WeightFormat::kBF16 ? kernels.gemm_bf16
                 : format == WeightFormat::kQ8   ? kernels.gemm_q8
                                                 : kernels.gemm_q4;
    const bool quantized = format == WeightFormat::kQ8 || format == WeightFormat::kQ4;
    for (auto _ : state) {
        if (quantized) kernels.quantize_rows(x.data(), k, k, 0, m, xq);
        gemm(args, 0, packed.view().panels);
        benchmark::DoNotOptimize(y.data());
    }
    state.counters["FLOP/s"] =
        benchmark::Counter(2.0 * m * k * n, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["weight_B/s"] = benchmark::Counter(
        static_cast<double>(packed.bytes()), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_OpenBlasSgemm(benchmark::State& state) {
    const int m = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1)),
              n = static_cast<int>(state.range(2));
    openblas_set_num_threads(1);
    const auto w = random_values(static_cast<std::size_t>(k) * n, 0.05f, 1);
    const auto x = random_values(static_cast<std::size_t>(m) * k, 1.0f, 2);
    std::vector<float> y(static_cast<std::size_t>(m) * n);
    for (auto _ : state) {
        if (m == 1) {
            cblas_sgemv(CblasRowMajor, CblasTrans, k, n, 1.0f, w.data(), n, x.data(), 1, 0.0f,
                        y.data(), 1);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, x.data(), k,
                        w.data(), n, 0.0f, y.data(), n);
        }
        benchmark::DoNotOptimize(y.data());
    }
    state.counters["FLOP/s"] =
        benchmark::Counter(2.0 * m * k * n, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_PoolLinear(benchmark::State& state) {
    const WeightFormat format = kFormats[state.range(0)];
    const int m = static_cast<int>(state.range(1)), k = static_cast<int>(state.range(2)),
              n = static_cast<int>(state.range(3));
    auto backend = make_cpu_backend(0, best_isa());
    const auto weights = random_values(static_cast<std::size_t>(k) * n, 0.05f, 1);
    auto w = backend->upload_matrix(tensor_view(weights, k, n), MatrixLayout::kInOut, format);
    auto x = backend->allocate(static_cast<std::size_t>(m) * k);
    auto y = backend->allocate(static_cast<std::size_t>(m) * n);
    const auto values = random_values(x->size(), 1.0f, 2);
    std::memcpy(x->data(), values.data(), values.size() * sizeof(float));
    for (auto _ : state) {
        backend->linear({x->data(), m, k}, *w, nullptr, {y->data(), m, n});
        benchmark::DoNotOptimize(y->data());
    }
    state.counters["FLOP/s"] =
        benchmark::Counter(2.0 * m * k * n, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["weight_B/s"] = benchmark::Counter(
        static_cast<double>(w->resident_bytes()), benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel("threads " + std::to_string(backend->threads()));
}

// One parallel region with next to no work: the fixed cost every op of a decode step pays.
void BM_PoolRegion(benchmark::State& state) {
    WorkerPool pool(0);
    std::vector<int> sink(64);
    for (auto _ : state) {
        pool.parallel_for(sink.size(), 1, [&](std::size_t begin, std::size_t end) {
            for (std::size_t i = begin; i < end; ++i) ++sink[i];
        });
        benchmark::DoNotOptimize(sink.data());
    }
    state.SetLabel("threads " + std::to_string(pool.size()));
}

void BM_Attention(benchmark::State& state) {
    Isa isa;
    if (!select_isa(state, 0, isa)) return;
    const int rows = static_cast<int>(state.range(1)), context = static_cast<int>(state.range(2));
    constexpr int kEmbd = 768, kHeads = 12, kBlockTokens = 16;
    const int blocks = (context + kBlockTokens - 1) / kBlockTokens;
    const auto kv =
        random_values(static_cast<std::size_t>(blocks) * 2 * kBlockTokens * kEmbd, 1.0f, 3);
    const auto qkv = random_values(static_cast<std::size_t>(rows) * 3 * kEmbd, 1.0f, 4);
    std::vector<float> out(static_cast<std::size_t>(rows) * kEmbd);
    std::vector<int> positions(rows), table(blocks);
    for (int r = 0; r < rows; ++r) positions[r] = context - rows + r;
    for (int b = 0; b < blocks; ++b) table[b] = b;
    AttentionArgs args{qkv.data(),
                       3 * kEmbd,
                       out.data(),
                       kEmbd,
                       positions.data(),
                       kv.data(),
                       static_cast<std::size_t>(2) * kBlockTokens * kEmbd,
                       kBlockTokens,
                       kEmbd,
                       kEmbd / kHeads,
                       0.125f};
    const KernelTable& kernels = kernel_table(isa);
    for (auto _ : state) {
        for (int row = 0; row < rows; row += kAttentionTileRows)
            for (int head = 0; head < kHeads; ++head)
                kernels.attention(
                    args, {row, std::min(kAttentionTileRows, rows - row), head, table.data()});
        benchmark::DoNotOptimize(out.data());
    }
    double pairs = 0;  // query-key pairs, each 2 · 64 multiply-adds (q·k and p·v)
    for (int r = 0; r < rows; ++r) pairs += positions[r] + 1;
    state.counters["FLOP/s"] =
        benchmark::Counter(pairs * kHeads * 64 * 4, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_LayerNorm(benchmark::State& state) {
    Isa isa;
    if (!select_isa(state, 0, isa)) return;
    const int cols = static_cast<int>(state.range(1));
    const auto x = random_values(cols, 1.0f, 5), gamma = random_values(cols, 1.0f, 6),
               beta = random_values(cols, 1.0f, 7);
    std::vector<float> y(cols);
    for (auto _ : state) {
        kernel_table(isa).layer_norm(x.data(), gamma.data(), beta.data(), 1e-5f, cols, y.data());
        benchmark::DoNotOptimize(y.data());
    }
    state.SetItemsProcessed(state.iterations() * cols);
}

void BM_Gelu(benchmark::State& state) {
    Isa isa;
    if (!select_isa(state, 0, isa)) return;
    const int count = static_cast<int>(state.range(1));
    const auto x = random_values(count, 4.0f, 8);
    std::vector<float> y(count);
    for (auto _ : state) {
        std::memcpy(y.data(), x.data(), count * sizeof(float));
        kernel_table(isa).activation(Activation::kGeluNew, y.data(), y.size());
        benchmark::DoNotOptimize(y.data());
    }
    state.SetItemsProcessed(state.iterations() * count);
}

// GPT-2 124M: qkv 768x2304, attention proj 768x768, MLP 768x3072 and 3072x768; lm_head 768x50257.
void gemm_shapes(benchmark::internal::Benchmark* b) {
    for (int isa = 0; isa < 3; ++isa)
        for (int format = 0; format < 7; ++format) {
            for (int m : {1, 16, 128, 512}) b->Args({isa, format, m, 768, 3072});
            b->Args({isa, format, 512, 3072, 768});
            b->Args({isa, format, 1, 768, 50257});
        }
}

BENCHMARK(BM_Gemm)->Apply(gemm_shapes)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_OpenBlasSgemm)
    ->Args({1, 768, 3072})
    ->Args({16, 768, 3072})
    ->Args({128, 768, 3072})
    ->Args({512, 768, 3072})
    ->Args({512, 3072, 768})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PoolLinear)
    ->ArgsProduct({{0, 1, 2, 3, 4}, {1, 16}, {768}, {3072}})
    ->ArgsProduct({{0, 1, 2, 3}, {1}, {768}, {50257}})
    ->Args({0, 512, 768, 3072})
    ->Args({3, 512, 768, 3072})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_Attention)
    ->ArgsProduct({{0, 1, 2}, {1}, {128, 512}})
    ->ArgsProduct({{1, 2}, {512}, {512}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PoolRegion)->UseRealTime();
BENCHMARK(BM_LayerNorm)->ArgsProduct({{0, 1, 2}, {768}});
BENCHMARK(BM_Gelu)->ArgsProduct({{0, 1, 2}, {3072}});

}  // namespace
}  // namespace llmserve::backend::cpu
