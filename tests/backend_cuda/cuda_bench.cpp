// GPU throughput of the whole engine on synthetic models of the published GPT-2 shapes, measured
// the way the seed stack's baseline was (tests/fixtures/README.md): f16 weights, prompt 128, 128
// new greedy tokens, after two full warm-up generations; generated tokens over wall time, prefill
// included. Also the prefill rate of a 512-token prompt. Prints one line per figure.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>

#include "backend/cuda/cuda_backend.h"
#include "common/error.h"
#include "engine/engine.h"
#include "model/synthetic.h"

namespace llmserve {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    std::vector<std::string> shapes = {"gpt2", "gpt2-medium", "gpt2-large"};
    std::vector<int> batches = {1, 32};
    int prompt_tokens = 128;
    int new_tokens = 128;
    int prefill_tokens = 512;
    int repeats = 3;
    int device = 0;
};

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
}

// Random prompts, different every call so that the prefix cache never helps.
std::vector<engine::TokenId> random_prompt(int length, int vocab, std::uint64_t& state) {
    std::vector<engine::TokenId> prompt(length);
    for (auto& token : prompt) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        token = static_cast<engine::TokenId>((state >> 33) % static_cast<std::uint64_t>(vocab));
    }
    return prompt;
}

engine::GenerationRequest greedy(std::vector<engine::TokenId> prompt, int new_tokens) {
    engine::GenerationRequest request;
    request.prompt = std::move(prompt);
    request.sampling.temperature = 0.0f;
    request.stop.max_new_tokens = new_tokens;
    request.stop.ignore_eos = true;
    return request;
}

// `batch` requests submitted together; returns generated tokens per second of wall time.
double generate(engine::Engine& engine, int batch, const Options& options, int vocab,
                std::uint64_t& state) {
    std::vector<std::shared_ptr<engine::RequestHandle>> handles;
    const auto start = Clock::now();
    for (int i = 0; i < batch; ++i)
        handles.push_back(engine.submit(
            greedy(random_prompt(options.prompt_tokens, vocab, state), options.new_tokens)));
    int generated = 0;
    for (auto& handle : handles) generated += handle->wait().completion_tokens;
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return generated / seconds;
}

void bench_shape(const std::string& shape, std::shared_ptr<backend::Backend> device,
                 const Options& options) {
    const model::ModelConfig config = model::published_shape(shape);
    const auto model =
        model::synthetic_model(config, DType::kF16, {device, backend::WeightFormat::kAuto}, shape);
    const int max_batch = *std::max_element(options.batches.begin(), options.batches.end());
    engine::EngineOptions engine_options;
    engine_options.max_running_sequences = max_batch;
    // Room for every sequence of the largest batch plus one full context (the engine's minimum).
    const int block_tokens = engine_options.kv_block_tokens;
    const std::size_t block_bytes =
        static_cast<std::size_t>(config.n_layer) * 2 * block_tokens * config.n_embd * sizeof(float);
    const int blocks_per_sequence =
        (options.prompt_tokens + options.new_tokens + block_tokens - 1) / block_tokens;
    const int context_blocks = (config.n_positions + block_tokens - 1) / block_tokens;
    engine_options.kv_cache_bytes =
        block_bytes * (static_cast<std::size_t>(max_batch) * blocks_per_sequence + context_blocks);
    engine::Engine engine(model, nullptr, engine_options);
    std::cout << fmt::format("{}: {} layers, n_embd {}, {:.0f}M parameters, f16 weights on {}\n",
                             shape, config.n_layer, config.n_embd, model->parameter_count() / 1e6,
                             model->device_name());

    std::uint64_t state = 42;
    for (int i = 0; i < 2; ++i) generate(engine, max_batch, options, config.vocab_size, state);

    for (int batch : options.batches) {
        std::vector<double> rates;
        for (int i = 0; i < options.repeats; ++i)
            rates.push_back(generate(engine, batch, options, config.vocab_size, state));
        std::cout << fmt::format(
            "RESULT {} batch {:3d}: {:9.1f} generated tokens/s (prompt {}, {} new, median of "
            "{})\n",
            shape, batch, median(rates), options.prompt_tokens, options.new_tokens,
            options.repeats);
    }
    if (options.prefill_tokens + 1 <= config.n_positions) {
        std::vector<double> rates;
        for (int i = 0; i < options.repeats; ++i) {
            const auto result =
                engine
                    .submit(
                        greedy(random_prompt(options.prefill_tokens, config.vocab_size, state), 1))
                    ->wait();
            rates.push_back(options.prefill_tokens / (result.timing.prefill_ms / 1000.0));
        }
        std::cout << fmt::format("RESULT {} prefill {}: {:9.1f} prompt tokens/s (median of {})\n",
                                 shape, options.prefill_tokens, median(rates), options.repeats);
    }
}

}  // namespace
}  // namespace llmserve

int main(int argc, char** argv) {
    llmserve::Options options;
    CLI::App app("GPU throughput of the engine on synthetic GPT-2 shapes");
    app.add_option("--shapes", options.shapes, "gpt2, gpt2-medium, gpt2-large, gpt2-xl")
        ->capture_default_str();
    app.add_option("--batches", options.batches, "Concurrent requests per figure")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--prompt-tokens", options.prompt_tokens)->capture_default_str();
    app.add_option("--new-tokens", options.new_tokens)->capture_default_str();
    app.add_option("--prefill-tokens", options.prefill_tokens)->capture_default_str();
    app.add_option("--repeats", options.repeats)->check(CLI::Range(1, 100))->capture_default_str();
    app.add_option("--device", options.device, "CUDA device index")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    try {
        const std::string description = llmserve::backend::describe_cuda_device(options.device);
        std::cout << "device: " << description << "\n";
        const std::shared_ptr<llmserve::backend::Backend> device =
            llmserve::backend::make_cuda_backend(options.device);
        for (const auto& shape : options.shapes) llmserve::bench_shape(shape, device, options);
    } catch (const llmserve::Error& error) {
        std::cerr << "cuda_bench: " << error.what() << "\n";
        return 1;
    }
    return 0;
}
