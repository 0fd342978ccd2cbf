// `llmserve bench`: prefill and decode speed of the whole engine on a real or synthetic model.
#include <fmt/format.h>

#include <algorithm>
#include <iostream>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "common/error.h"
#include "engine/engine.h"
#include "model/synthetic.h"

namespace llmserve::cli {
namespace {

struct BenchOptions {
    ModelOptions model;
    std::string shape;
    std::string weights_dtype = "f32";
    std::vector<int> prompt_lengths = {128, 512};
    int decode_tokens = 64;
    int repeats = 3;
};

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    return values.empty() ? 0.0 : values[values.size() / 2];
}

// A prompt of random tokens, different every call so the prefix cache never helps.
std::vector<engine::TokenId> random_prompt(int length, int vocab, std::uint64_t& state) {
    std::vector<engine::TokenId> prompt(length);
    for (auto& token : prompt) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        token = static_cast<engine::TokenId>((state >> 33) % static_cast<std::uint64_t>(vocab));
    }
    return prompt;
}

engine::RequestResult run_once(engine::Engine& engine, std::vector<engine::TokenId> prompt,
                               int new_tokens) {
    engine::GenerationRequest request;
    request.prompt = std::move(prompt);
    request.sampling.temperature = 0.0f;
    request.stop.max_new_tokens = new_tokens;
    request.stop.ignore_eos = true;
    return engine.submit(std::move(request))->wait();
}

void run_bench(const BenchOptions& options) {
    std::shared_ptr<const model::Gpt2Model> model;
    if (!options.shape.empty()) {
        model::LoadOptions load;
        load.backend = options.model.make_backend();
        load.weight_format = backend::parse_weight_format(options.model.dtype);
        const DType stored = options.weights_dtype == "f16"    ? DType::kF16
                             : options.weights_dtype == "bf16" ? DType::kBF16
                                                               : DType::kF32;
        model = model::synthetic_model(model::published_shape(options.shape), stored, load,
                                       options.shape);
    } else {
        model = options.model.load_model(options.model.resolved_model_dir());
    }
    const auto& config = model->config();
    std::cout << fmt::format(
        "model {}: {} layers, n_embd {}, {:.1f}M parameters, stored {}, compute {}, {} on {} "
        "threads\n",
        model->name(), config.n_layer, config.n_embd, model->parameter_count() / 1e6,
        model->stored_dtype(), model->dtype(), model->device_name(), model->backend().threads());
    engine::EngineOptions engine_options;
    engine_options.max_running_sequences = 4;
    engine::Engine engine(model, nullptr, engine_options);
    std::uint64_t state = 42;
    run_once(engine, random_prompt(16, config.vocab_size, state), 4);  // warm-up

    for (int length : options.prompt_lengths) {
        if (length + 1 > config.n_positions) continue;
        std::vector<double> rates;
        for (int i = 0; i < options.repeats; ++i) {
            const auto result =
                run_once(engine, random_prompt(length, config.vocab_size, state), 1);
            rates.push_back(length / (result.timing.prefill_ms / 1000.0));
        }
        std::cout << fmt::format("prefill  {:4d}-token prompt: {:9.1f} tokens/s (median of {})\n",
                                 length, median(rates), options.repeats);
    }
    const int decode_prompt = std::min(16, config.n_positions - options.decode_tokens - 1);
    std::vector<double> rates;
    for (int i = 0; i < options.repeats; ++i) {
        const auto result =
            run_once(engine, random_prompt(std::max(1, decode_prompt), config.vocab_size, state),
                     options.decode_tokens);
        rates.push_back((result.completion_tokens - 1) / (result.timing.decode_ms / 1000.0));
    }
    std::cout << fmt::format("decode   batch 1, {} tokens:  {:9.1f} tokens/s (median of {})\n",
                             options.decode_tokens, median(rates), options.repeats);
}

}  // namespace

void register_bench_command(CLI::App& app) {
    auto options = std::make_shared<BenchOptions>();
    CLI::App* cmd = app.add_subcommand("bench", "Measure prefill and decode tokens/s");
    options->model.add_to(*cmd);
    cmd->add_option("--shape", options->shape,
                    "Random weights of a published shape: gpt2, gpt2-medium, gpt2-large, gpt2-xl");
    cmd->add_option("--weights-dtype", options->weights_dtype,
                    "Stored dtype of the synthetic weights")
        ->check(CLI::IsMember({"f32", "f16", "bf16"}))
        ->capture_default_str();
    cmd->add_option("--prompt-lengths", options->prompt_lengths, "Prompt lengths for prefill")
        ->capture_default_str();
    cmd->add_option("--decode-tokens", options->decode_tokens,
                    "Tokens generated for the decode figure")
        ->check(CLI::Range(2, 100000))
        ->capture_default_str();
    cmd->add_option("--repeats", options->repeats, "Runs per figure (the median is shown)")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    cmd->callback([options] { run_bench(*options); });
}

}  // namespace llmserve::cli
