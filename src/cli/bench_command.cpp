// `llmserve bench`: the whole engine's speed on a real or synthetic model. Prefill tokens/s, time
// to first token with and without a cached prompt prefix, decode tokens/s at batch 1 and in
// aggregate with several concurrent sequences, time to first token and inter-token latency
// percentiles under a closed-loop concurrent load, peak resident memory, and the machine's memory
// bandwidth measured on the spot, so that each decode figure is also a percentage of its roofline
// (weight bytes read per step / bandwidth). Every figure is the median of --repeats runs after a
// warm-up. Results as a table, and as JSON with --json. With --json-schema the decode figures are
// also taken with every sequence constrained by the schema, alternating run by run with the
// unconstrained ones, and the constraint's overhead is reported.
#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/packed_matrix.h"
#include "cli/commands.h"
#include "cli/model_options.h"
#include "common/error.h"
#include "engine/engine.h"
#include "grammar/constraint.h"
#include "grammar/json_schema.h"
#include "model/synthetic.h"

namespace llmserve::cli {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct BenchOptions {
    ModelOptions model;
    std::string shape;
    std::string tokenizer_dir;     // a tokenizer for a --shape model
    std::string json_schema_file;  // constrains the decode figures' sequences
    std::string weights_dtype = "f32";
    std::vector<int> prompt_lengths = {128, 512};
    int decode_tokens = 128;
    std::vector<int> concurrency = {4, 16};
    // The seed stack's method (transformers generate(), ../shared/fixtures/README.md): requests
    // submitted together, generated tokens over the wall time, prefill included. None by default.
    std::vector<int> generate_batches;
    int generate_prompt = 128;
    int generate_new_tokens = 128;
    int load_prompt = 128;
    int load_new_tokens = 64;
    int load_rounds = 2;  // requests per concurrent slot in the load test
    int repeats = 3;
    std::string json_file;
};

double median(std::vector<double> values) {
    if (values.empty()) return 0.0;
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
}

// Nearest-rank percentile of `values` (sorted here), 0 < p <= 100.
double percentile(std::vector<double> values, double p) {
    if (values.empty()) return 0.0;
    std::sort(values.begin(), values.end());
    const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * values.size()));
    return values[std::clamp<std::size_t>(rank, 1, values.size()) - 1];
}

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
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

// What every bench request adds to the defaults: a bias that keeps a model whose vocabulary is
// larger than its tokenizer's (Qwen's padded 151,936 against 151,669 tokens) from generating
// ids the tokenizer cannot decode, which would fail the request.
using TokenBias = std::vector<std::pair<engine::TokenId, float>>;

engine::GenerationRequest greedy_request(
    std::vector<engine::TokenId> prompt, int new_tokens, const TokenBias& bias,
    std::shared_ptr<const grammar::Constraint> constraint = nullptr) {
    engine::GenerationRequest request;
    request.prompt = std::move(prompt);
    request.sampling.temperature = 0.0f;
    request.sampling.logit_bias = bias;
    request.stop.max_new_tokens = new_tokens;
    request.stop.ignore_eos = true;
    request.constraint = std::move(constraint);
    return request;
}

// The result of a decode request, which must not have failed (a constraint that no token can
// continue fails the request, and its figure would be meaningless).
engine::RequestResult wait_for_decode(engine::RequestHandle& handle) {
    engine::RequestResult result = handle.wait();
    if (!result.error.empty())
        fail(result.error_code, "bench: a decode request failed: {}", result.error);
    return result;
}

// The constraint of the constrained decode figures: one or more instances of the schema back to
// back. A single instance could be complete after a few tokens of random weights and end its
// sequence early (a smaller batch from then on); repeated, every sequence decodes all its tokens
// under the schema's masks, EOS allowed (and ignored) between instances.
std::shared_ptr<const grammar::Constraint> repeated_schema_constraint(const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in)
        throw Error(ErrorCode::kNotFound, fmt::format("--json-schema: cannot read '{}'", file),
                    "--json-schema");
    const std::string schema{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::string gbnf = grammar::json_schema_to_gbnf(schema);
    constexpr std::string_view kRoot = "root ::= ";
    if (!gbnf.starts_with(kRoot))
        fail(ErrorCode::kInternal,
             "--json-schema '{}': the schema's grammar does not start with its root rule", file);
    gbnf = "root ::= schema-instance+\nschema-instance ::= " + gbnf.substr(kRoot.size());
    return std::make_shared<const grammar::Constraint>(std::move(gbnf));
}

// "median (min to max)" of `values`, each formatted with `spec`.
std::string median_and_range(const std::vector<double>& values, std::string_view spec) {
    const auto [low, high] = std::minmax_element(values.begin(), values.end());
    return fmt::format(fmt::runtime(fmt::format("{{:{0}}} ({{:{0}}} to {{:{0}}})", spec)),
                       median(values), *low, *high);
}

// Percent by which each constrained rate is below its unconstrained partner.
std::vector<double> slowdown_percent(const std::vector<double>& unconstrained,
                                     const std::vector<double>& constrained) {
    std::vector<double> percent;
    for (std::size_t i = 0; i < constrained.size(); ++i)
        percent.push_back(100.0 * (1.0 - constrained[i] / unconstrained[i]));
    return percent;
}

// ---- the machine ------------------------------------------------------------------------------

// Read bandwidth with `threads` threads each summing its share of a 512 MiB buffer (far beyond
// any cache) with the CPU backend's own vector code, from memory allocated as the weights are:
// the median of 9 passes, in bytes/s (on a shared machine single passes swing widely; the median
// is what a decode step can expect). Runs in a child process so that the buffer does not count in
// this process's peak resident memory.
double measure_bandwidth(int threads) {
    int fds[2];
    if (pipe(fds) != 0) fail(ErrorCode::kUnavailable, "bandwidth probe: pipe failed");
    const pid_t child = fork();
    if (child < 0) fail(ErrorCode::kUnavailable, "bandwidth probe: fork failed");
    if (child == 0) {
        const auto& kernels = backend::cpu::kernel_table(backend::cpu::default_isa());
        constexpr std::size_t kFloats = (std::size_t{512} << 20) / sizeof(float);
        const std::size_t share = kFloats / threads;
        // Allocated as the weights are (huge pages where the kernel gives them).
        const backend::cpu::AlignedBuffer storage(kFloats * sizeof(float), /*huge_pages=*/true);
        const std::span<float> buffer(reinterpret_cast<float*>(storage.data()), kFloats);
        std::fill(buffer.begin(), buffer.end(), 1.0f);
        std::vector<float> sums(threads);
        std::vector<double> rates;
        for (int pass = 0; pass < 9; ++pass) {
            const auto start = Clock::now();
            std::vector<std::thread> workers;
            for (int t = 0; t < threads; ++t)
                workers.emplace_back(
                    [&, t] { sums[t] = kernels.sum(buffer.data() + share * t, share); });
            for (auto& worker : workers) worker.join();
            const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
            rates.push_back(static_cast<double>(share * threads * sizeof(float)) / seconds);
        }
        const double rate =
            sums[0] == static_cast<float>(share) ? median(rates) : 0.0;  // keeps the sums
        const ssize_t written = write(fds[1], &rate, sizeof(rate));
        _exit(written == sizeof(rate) && rate > 0.0 ? 0 : 1);
    }
    close(fds[1]);
    double rate = 0.0;
    const ssize_t got = read(fds[0], &rate, sizeof(rate));
    close(fds[0]);
    int status = 0;
    waitpid(child, &status, 0);
    if (got != sizeof(rate) || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail(ErrorCode::kUnavailable, "bandwidth probe: the measuring process failed");
    return rate;
}

std::string cpu_model_name() {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown CPU";
}

std::string load_average() {
    std::ifstream in("/proc/loadavg");
    std::string one, five, fifteen;
    in >> one >> five >> fifteen;
    return one + " " + five + " " + fifteen;
}

// Peak resident memory of this process in bytes (getrusage). Linux resets it together with VmHWM,
// so read it before reset_serving_peak() to keep the loading peak.
std::size_t peak_rss_bytes() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return static_cast<std::size_t>(usage.ru_maxrss) * 1024;
}
bool reset_serving_peak() {
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";  // resets VmHWM to the current resident size
    return static_cast<bool>(clear.flush());
}
std::size_t serving_peak_bytes() {
    std::ifstream in("/proc/self/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
    return 0;
}

// ---- the measurements ---------------------------------------------------------------------------

struct LoadFigures {
    int concurrency = 0;
    int requests = 0;
    double seconds = 0.0;
    double tokens_per_second = 0.0;
    std::vector<double> ttft_ms, itl_ms;
};

// Closed loop: `concurrency` clients, each submitting its next request as soon as the previous
// one ends. TTFT: submit to the first streamed token; ITL: gaps between streamed tokens (tokens
// that arrive together share the gap).
LoadFigures run_load(engine::Engine& engine, const BenchOptions& options, int concurrency,
                     int vocab, const TokenBias& bias) {
    LoadFigures figures;
    figures.concurrency = concurrency;
    figures.requests = concurrency * options.load_rounds;
    std::atomic<int> next{0};
    std::atomic<long> tokens{0};
    std::mutex mutex;
    const auto start = Clock::now();
    std::vector<std::thread> clients;
    for (int c = 0; c < concurrency; ++c)
        clients.emplace_back([&] {
            for (int i = next++; i < figures.requests; i = next++) {
                std::uint64_t state = 1000 + static_cast<std::uint64_t>(i);
                const auto submitted = Clock::now();
                auto handle =
                    engine.submit(greedy_request(random_prompt(options.load_prompt, vocab, state),
                                                 options.load_new_tokens, bias));
                std::vector<double> itl;
                double ttft = -1.0;
                auto previous = submitted;
                while (!handle->finished()) {
                    auto event = handle->next_event(std::chrono::milliseconds(50));
                    if (!event || event->tokens.empty()) continue;
                    const auto now = Clock::now();
                    if (ttft < 0) {
                        ttft = ms_between(submitted, now);
                        for (std::size_t t = 1; t < event->tokens.size(); ++t) itl.push_back(0.0);
                    } else {
                        const double gap = ms_between(previous, now) / event->tokens.size();
                        for (std::size_t t = 0; t < event->tokens.size(); ++t) itl.push_back(gap);
                    }
                    previous = now;
                }
                const auto result = handle->wait();
                tokens += result.completion_tokens;
                std::lock_guard lock(mutex);
                if (ttft >= 0) figures.ttft_ms.push_back(ttft);
                figures.itl_ms.insert(figures.itl_ms.end(), itl.begin(), itl.end());
            }
        });
    for (auto& client : clients) client.join();
    figures.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    figures.tokens_per_second = static_cast<double>(tokens.load()) / figures.seconds;
    return figures;
}

// `batch` requests of `prompt` random tokens submitted together, each generating `new_tokens`:
// generated tokens over the wall time from submitting to the last result.
double generate_rate(engine::Engine& engine, int batch, int prompt, int new_tokens, int vocab,
                     std::uint64_t& state, const TokenBias& bias) {
    std::vector<std::shared_ptr<engine::RequestHandle>> handles;
    const auto start = Clock::now();
    for (int i = 0; i < batch; ++i)
        handles.push_back(
            engine.submit(greedy_request(random_prompt(prompt, vocab, state), new_tokens, bias)));
    long generated = 0;
    for (auto& handle : handles) generated += handle->wait().completion_tokens;
    return generated / std::chrono::duration<double>(Clock::now() - start).count();
}

// `sequences` requests submitted together, decoded in lock step: generated tokens after each
// one's first, over the time from the last first token to the last token.
double aggregate_decode_rate(engine::Engine& engine, int sequences, int new_tokens, int vocab,
                             std::uint64_t& state, const TokenBias& bias,
                             const std::shared_ptr<const grammar::Constraint>& constraint) {
    std::vector<std::shared_ptr<engine::RequestHandle>> handles;
    for (int s = 0; s < sequences; ++s)
        handles.push_back(engine.submit(
            greedy_request(random_prompt(16, vocab, state), new_tokens, bias, constraint)));
    double first_token_ms = 0.0, end_ms = 0.0;
    long decoded = 0;
    for (auto& handle : handles) {
        const engine::RequestResult result = wait_for_decode(*handle);
        const auto& t = result.timing;
        first_token_ms = std::max(first_token_ms, t.queue_ms + t.prefill_ms);
        end_ms = std::max(end_ms, t.queue_ms + t.prefill_ms + t.decode_ms);
        decoded += result.completion_tokens - 1;
    }
    return decoded / ((end_ms - first_token_ms) / 1000.0);
}

void run_bench(const BenchOptions& options) {
    // Flag mistakes before the minutes of probing and building weights.
    if (!options.tokenizer_dir.empty() && options.shape.empty())
        fail_param("--tokenizer",
                   "--tokenizer is for a --shape model (a model directory brings its own)");
    std::string tokenizer_dir = options.tokenizer_dir;
    if (tokenizer_dir.empty() && !options.shape.empty() &&
        model::published_shape(options.shape).family() == "gpt2")
        tokenizer_dir = embedded_model_dir();  // GPT-2 shapes share the embedded vocabulary
    else if (tokenizer_dir.empty() && options.shape.empty())
        tokenizer_dir = options.model.resolved_model_dir();
    std::shared_ptr<const tokenizer::Tokenizer> tokenizer;
    if (!tokenizer_dir.empty()) tokenizer = load_tokenizer(tokenizer_dir);
    if (!options.shape.empty() && tokenizer) {
        const int shape_vocab = model::published_shape(options.shape).vocab_size;
        if (tokenizer->vocab_size() > static_cast<std::size_t>(shape_vocab))
            fail_param("--tokenizer",
                       "the tokenizer in '{}' has {} tokens, more than shape {}'s vocabulary of {} "
                       "(the model has no logits for the rest)",
                       tokenizer_dir, tokenizer->vocab_size(), options.shape, shape_vocab);
    }
    std::shared_ptr<const grammar::Constraint> constraint;
    if (!options.json_schema_file.empty()) {
        if (!tokenizer)
            fail_param(
                "--json-schema",
                "--json-schema needs a tokenizer, and shape {} runs on token ids alone: give "
                "--tokenizer DIR",
                options.shape);
        constraint = repeated_schema_constraint(options.json_schema_file);
    }

    const auto threads_hint =
        options.model.threads > 0
            ? options.model.threads
            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    // Before the model exists: the probe forks, and its buffer must not count as ours.
    const double bandwidth = measure_bandwidth(threads_hint);

    std::shared_ptr<const model::Model> model;
    if (!options.shape.empty()) {
        model::LoadOptions load;
        load.backend = options.model.make_backend();
        load.weight_format = backend::parse_weight_format(options.model.dtype);
        const std::string& w = options.weights_dtype;
        const DType stored = w == "f16"    ? DType::kF16
                             : w == "bf16" ? DType::kBF16
                             : w == "q8_0" ? DType::kQ8_0
                             : w == "q4_0" ? DType::kQ4_0
                             : w == "q5_0" ? DType::kQ5_0
                             : w == "q5_1" ? DType::kQ5_1
                             : w == "q4_k" ? DType::kQ4_K
                             : w == "q5_k" ? DType::kQ5_K
                             : w == "q6_k" ? DType::kQ6_K
                                           : DType::kF32;
        model = model::synthetic_model(
            model::published_shape(options.shape), stored, load, options.shape,
            w == "q4_k_m" ? model::SyntheticMix::kQ4_K_M : model::SyntheticMix::kUniform);
    } else {
        model = options.model.load_model(tokenizer_dir);
    }
    const auto& config = model->config();
    const bool on_cpu = model->device_name() == "cpu";
    const auto format = backend::parse_weight_format(model->dtype());
    // Per decode step every layer weight and the output projection are read once; of the
    // learned position embeddings (rotary models have none) one row.
    const std::size_t position_bytes =
        config.rope ? 0 : backend::cpu::packed_bytes(format, config.n_embd, config.n_positions);
    const std::size_t step_bytes =
        on_cpu ? model->resident_weight_bytes() - position_bytes : model->weight_bytes();
    // Decode steps/s if weights streamed at the probed bandwidth: the host's, so only on the CPU.
    const double roofline = on_cpu ? bandwidth / static_cast<double>(step_bytes) : 0.0;
    auto of_roofline = [&](double rate, double bound) {
        return on_cpu ? fmt::format("{:.0f}% of roofline {:.1f}", 100.0 * rate / bound, bound)
                      : std::string("(no roofline: the bandwidth probe measures host memory)");
    };

    int max_concurrency = 1;
    for (int n : options.concurrency) max_concurrency = std::max(max_concurrency, n);
    for (int n : options.generate_batches) max_concurrency = std::max(max_concurrency, n);
    engine::EngineOptions engine_options;
    engine_options.max_running_sequences = max_concurrency;
    engine_options.kv_format = options.model.kv_format();
    // KV budget: the most any phase holds at once (whole 16-token blocks per sequence), and at
    // least one full context, which the engine requires.
    const int block_tokens = engine_options.kv_block_tokens;
    auto blocks_for = [&](int sequences, int tokens) {
        return static_cast<std::size_t>(sequences) * ((tokens + block_tokens - 1) / block_tokens);
    };
    std::size_t kv_blocks = blocks_for(1, config.n_positions);
    for (int length : options.prompt_lengths)
        kv_blocks = std::max(kv_blocks, blocks_for(1, length + 1));
    kv_blocks = std::max(kv_blocks, blocks_for(max_concurrency, 16 + options.decode_tokens));
    kv_blocks = std::max(
        kv_blocks, blocks_for(max_concurrency, options.load_prompt + options.load_new_tokens));
    kv_blocks = std::max(kv_blocks, blocks_for(max_concurrency, options.generate_prompt +
                                                                    options.generate_new_tokens));
    engine_options.kv_cache_bytes =
        kv_blocks *
        engine::kv_cache_geometry(config, block_tokens, engine_options.kv_format).block_bytes;
    engine::Engine engine(model, tokenizer, engine_options);
    const std::size_t kv_bytes = engine_options.kv_cache_bytes;
    const std::size_t weights_bytes =
        on_cpu ? model->resident_weight_bytes() : model->weight_bytes();
    const std::size_t loading_peak = peak_rss_bytes();
    const bool serving_peak_known = reset_serving_peak();

    const std::string device =
        on_cpu ? fmt::format("cpu, {} kernels, {} threads",
                             backend::cpu::to_string(backend::cpu::default_isa()),
                             model->backend().threads())
               : model->device_name();
    std::cout << fmt::format("machine: {}, {} logical CPUs, load average {}\n", cpu_model_name(),
                             std::thread::hardware_concurrency(), load_average());
    std::cout << fmt::format(
        "model {} ({}): {} layers, n_embd {}, {}/{} heads of {}, {:.1f}M parameters, stored {}, "
        "compute {}, KV cache {} ({})\n",
        model->name(), config.family(), config.n_layer, config.n_embd, config.n_head,
        config.n_kv_head, config.head_dim, model->parameter_count() / 1e6, model->stored_summary(),
        model->compute_summary(), backend::to_string(engine_options.kv_format), device);
    if (on_cpu)
        std::cout << fmt::format(
            "memory bandwidth {:.1f} GB/s ({} threads); weights read per decode step {:.1f} MB, "
            "so at most {:.1f} decode steps/s\n\n",
            bandwidth / 1e9, threads_hint, step_bytes / 1e6, roofline);
    else
        std::cout << fmt::format("weights read per decode step {:.1f} MB\n\n", step_bytes / 1e6);

    json report;
    report["machine"] = {{"cpu", cpu_model_name()},
                         {"logical_cpus", std::thread::hardware_concurrency()},
                         {"load_average", load_average()},
                         {"bandwidth_gb_per_s", bandwidth / 1e9}};
    report["model"] = {{"name", model->name()},
                       {"architecture", config.family()},
                       {"layers", config.n_layer},
                       {"n_embd", config.n_embd},
                       {"parameters", model->parameter_count()},
                       {"stored_dtype", model->stored_dtype()},
                       {"compute_dtype", model->dtype()},
                       {"kv_cache_dtype", backend::to_string(engine_options.kv_format)},
                       {"device", device},
                       {"weight_bytes_per_decode_step", step_bytes}};
    auto row = [](const std::string& name, const std::string& value, const std::string& note) {
        std::cout << fmt::format("{:<44} {:>18}  {}\n", name, value, note);
    };
    row("figure", "value", "");
    std::uint64_t state = 42;
    TokenBias bias;
    if (tokenizer)
        for (auto id = static_cast<engine::TokenId>(tokenizer->vocab_size());
             id < config.vocab_size; ++id)
            bias.emplace_back(id, -100.0f);  // OpenAI's lowest: far below random weights' logits
    for (int i = 0; i < 2; ++i)  // warm-up: first-touch of KV pages, caches, thread wake-up
        engine.submit(greedy_request(random_prompt(64, config.vocab_size, state), 8, bias))->wait();
    const int decode_tokens = std::min(options.decode_tokens, config.n_positions - 17);
    // The schema's masks computed once, as for a schema a server sees request after request
    // (a first request's extra cost is bench_grammar's "cold" figure).
    if (constraint)
        wait_for_decode(*engine.submit(greedy_request(random_prompt(16, config.vocab_size, state),
                                                      decode_tokens, bias, constraint)));

    for (int length : options.prompt_lengths) {
        if (length + 1 > config.n_positions) continue;
        std::vector<double> rates;
        for (int i = 0; i < options.repeats; ++i) {
            const auto result = engine
                                    .submit(greedy_request(
                                        random_prompt(length, config.vocab_size, state), 1, bias))
                                    ->wait();
            rates.push_back(length / (result.timing.prefill_ms / 1000.0));
        }
        row(fmt::format("prefill {}-token prompt", length),
            fmt::format("{:.1f} tok/s", median(rates)), "");
        report["prefill_tokens_per_s"][std::to_string(length)] = median(rates);
    }

    // Prefix cache: the same prompt twice; the second reuses the first's full KV blocks and
    // computes only the rest. Time to first token = queueing + prefill.
    const int cached_length =
        std::min(*std::max_element(options.prompt_lengths.begin(), options.prompt_lengths.end()),
                 config.n_positions - 1);
    std::vector<double> cold_ms, warm_ms;
    for (int i = 0; i < options.repeats; ++i) {
        const auto prompt = random_prompt(cached_length, config.vocab_size, state);
        for (auto* times : {&cold_ms, &warm_ms}) {
            const auto timing = engine.submit(greedy_request(prompt, 1, bias))->wait().timing;
            times->push_back(timing.queue_ms + timing.prefill_ms);
        }
    }
    row(fmt::format("time to first token, {}-token prompt", cached_length),
        fmt::format("{:.1f} / {:.1f} ms", median(cold_ms), median(warm_ms)),
        fmt::format("cold / prefix cached ({:.0f}% of cold)",
                    100.0 * median(warm_ms) / median(cold_ms)));
    report["prefix_cache"] = {
        {"prompt_tokens", cached_length},
        {"ttft_cold_ms", median(cold_ms)},
        {"ttft_cached_ms", median(warm_ms)},
        {"cached_percent_of_cold", 100.0 * median(warm_ms) / median(cold_ms)}};

    // Unconstrained and constrained runs alternate, so that both see the same machine load.
    const std::vector<std::shared_ptr<const grammar::Constraint>> modes =
        constraint ? std::vector{std::shared_ptr<const grammar::Constraint>(), constraint}
                   : std::vector{std::shared_ptr<const grammar::Constraint>()};
    std::vector<double> batch1_rates[2];
    for (int i = 0; i < options.repeats; ++i)
        for (std::size_t mode = 0; mode < modes.size(); ++mode) {
            const auto result = wait_for_decode(*engine.submit(greedy_request(
                random_prompt(16, config.vocab_size, state), decode_tokens, bias, modes[mode])));
            batch1_rates[mode].push_back((result.completion_tokens - 1) /
                                         (result.timing.decode_ms / 1000.0));
        }
    const double decode_rate = median(batch1_rates[0]);
    row(fmt::format("decode batch 1 ({} tokens)", decode_tokens),
        fmt::format("{:.1f} tok/s", decode_rate), of_roofline(decode_rate, roofline));
    report["decode_batch1_tokens_per_s"] = decode_rate;
    if (on_cpu) report["decode_batch1_roofline_percent"] = 100.0 * decode_rate / roofline;
    // A constrained figure's row and JSON: its rate and how much slower than the unconstrained
    // runs it alternated with (median and range over the pairs).
    auto report_constrained = [&](const std::string& label, const std::vector<double>& plain,
                                  const std::vector<double>& constrained, json& entry) {
        const std::vector<double> slowdown = slowdown_percent(plain, constrained);
        const auto [low, high] = std::minmax_element(slowdown.begin(), slowdown.end());
        row(label, fmt::format("{:.1f} tok/s", median(constrained)),
            fmt::format("{:.1f}% slower than unconstrained (pairs {:.1f} to {:.1f}%); runs {} "
                        "vs {} tok/s",
                        median(slowdown), *low, *high, median_and_range(constrained, ".1f"),
                        median_and_range(plain, ".1f")));
        entry = {{"tokens_per_s", median(constrained)},
                 {"slowdown_percent", median(slowdown)},
                 {"slowdown_percent_min", *low},
                 {"slowdown_percent_max", *high}};
    };
    if (constraint) {
        report_constrained(fmt::format("decode batch 1, constrained ({} tokens)", decode_tokens),
                           batch1_rates[0], batch1_rates[1], report["decode_batch1_constrained"]);
        report["decode_batch1_constrained"]["json_schema"] = options.json_schema_file;
    }

    for (int sequences : options.concurrency) {
        std::vector<double> aggregate[2];
        for (int i = 0; i < options.repeats; ++i)
            for (std::size_t mode = 0; mode < modes.size(); ++mode)
                aggregate[mode].push_back(aggregate_decode_rate(
                    engine, sequences, decode_tokens, config.vocab_size, state, bias, modes[mode]));
        const double rate = median(aggregate[0]);
        const double bound = roofline * sequences;
        row(fmt::format("decode {} concurrent sequences (aggregate)", sequences),
            fmt::format("{:.1f} tok/s", rate),
            fmt::format("{:.1f}x batch 1; {}", rate / decode_rate, of_roofline(rate, bound)));
        auto& entry = report["decode_aggregate"][std::to_string(sequences)];
        entry = {{"tokens_per_s", rate}, {"times_batch1", rate / decode_rate}};
        if (on_cpu) entry["roofline_percent"] = 100.0 * rate / bound;
        if (constraint)
            report_constrained(fmt::format("decode {} sequences, constrained", sequences),
                               aggregate[0], aggregate[1], entry["constrained"]);
    }

    for (int batch : options.generate_batches) {
        std::vector<double> generate;
        for (int i = 0; i < options.repeats; ++i)
            generate.push_back(generate_rate(engine, batch, options.generate_prompt,
                                             options.generate_new_tokens, config.vocab_size, state,
                                             bias));
        row(fmt::format("generate {} x ({}+{} tokens), wall time", batch, options.generate_prompt,
                        options.generate_new_tokens),
            fmt::format("{:.1f} tok/s", median(generate)),
            "generated tokens over wall time, prefill included");
        report["generate"][std::to_string(batch)] = {{"prompt_tokens", options.generate_prompt},
                                                     {"new_tokens", options.generate_new_tokens},
                                                     {"generated_tokens_per_s", median(generate)}};
    }

    for (int concurrency : options.concurrency) {
        const LoadFigures load = run_load(engine, options, concurrency, config.vocab_size, bias);
        const std::string label =
            fmt::format("load {} clients x {} requests ({}+{} tokens)", concurrency,
                        options.load_rounds, options.load_prompt, options.load_new_tokens);
        row(label, fmt::format("{:.1f} tok/s", load.tokens_per_second), "generated, all clients");
        row("  time to first token p50 / p90 / p99",
            fmt::format("{:.0f} / {:.0f} / {:.0f} ms", percentile(load.ttft_ms, 50),
                        percentile(load.ttft_ms, 90), percentile(load.ttft_ms, 99)),
            "");
        row("  inter-token latency p50 / p90 / p99",
            fmt::format("{:.1f} / {:.1f} / {:.1f} ms", percentile(load.itl_ms, 50),
                        percentile(load.itl_ms, 90), percentile(load.itl_ms, 99)),
            "");
        report["load"][std::to_string(concurrency)] = {
            {"requests", load.requests},
            {"prompt_tokens", options.load_prompt},
            {"new_tokens", options.load_new_tokens},
            {"generated_tokens_per_s", load.tokens_per_second},
            {"ttft_ms",
             {{"p50", percentile(load.ttft_ms, 50)},
              {"p90", percentile(load.ttft_ms, 90)},
              {"p99", percentile(load.ttft_ms, 99)}}},
            {"itl_ms",
             {{"p50", percentile(load.itl_ms, 50)},
              {"p90", percentile(load.itl_ms, 90)},
              {"p99", percentile(load.itl_ms, 99)}}}};
    }

    const std::size_t peak = std::max(loading_peak, peak_rss_bytes());
    const std::size_t serving_peak = serving_peak_known ? serving_peak_bytes() : 0;
    const std::size_t budget = weights_bytes + kv_bytes;
    row("peak resident memory (whole run)", fmt::format("{:.1f} MB", peak / 1e6),
        "includes loading (and building synthetic weights)");
    if (serving_peak > 0)
        row("peak resident memory while serving", fmt::format("{:.1f} MB", serving_peak / 1e6),
            fmt::format("{:.0f}% of weights {:.1f} MB + KV budget {:.1f} MB",
                        100.0 * serving_peak / budget, weights_bytes / 1e6, kv_bytes / 1e6));
    report["memory"] = {{"peak_rss_bytes", peak},
                        {"serving_peak_rss_bytes", serving_peak},
                        {"weight_bytes", weights_bytes},
                        {"kv_budget_bytes", kv_bytes}};

    if (!options.json_file.empty()) {
        std::ofstream out(options.json_file);
        if (!out)
            fail(ErrorCode::kNotFound, "cannot write the JSON report to '{}'", options.json_file);
        out << report.dump(2) << "\n";
        std::cout << "\nJSON report written to " << options.json_file << "\n";
    }
}

}  // namespace

void register_bench_command(CLI::App& app) {
    auto options = std::make_shared<BenchOptions>();
    CLI::App* cmd =
        app.add_subcommand("bench", "Measure prefill and decode speed, latency and memory");
    options->model.add_to(*cmd);
    cmd->add_option("--shape", options->shape,
                    "Random weights of a published shape: gpt2, gpt2-medium, gpt2-large, gpt2-xl, "
                    "qwen2.5-0.5b, smollm2-135m, llama-3.2-1b");
    cmd->add_option("--tokenizer", options->tokenizer_dir,
                    "Tokenizer directory for a --shape model (GPT-2 shapes default to the "
                    "embedded model's; the others run on token ids alone)");
    cmd->add_option("--json-schema", options->json_schema_file,
                    "Also measure decode with every sequence constrained by this JSON Schema "
                    "(instances back to back, so no sequence ends early), alternating with the "
                    "unconstrained runs");
    cmd->add_option("--weights-dtype", options->weights_dtype,
                    "Stored dtype of the synthetic weights (q8_0, q4_0, q5_0, q5_1, q4_k, q5_k, "
                    "q6_k: GGUF's blocks for the matrices; q4_k_m: llama.cpp's Q4_K_M mixture "
                    "of Q4_K and Q6_K; K-quant matrices whose rows are not whole 256-value "
                    "blocks take q5_0, q5_1 or q8_0, as llama.cpp does)")
        ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q5_0", "q5_1", "q4_k", "q5_k",
                               "q6_k", "q4_k_m"}))
        ->capture_default_str();
    cmd->add_option("--prompt-lengths", options->prompt_lengths, "Prompt lengths for prefill")
        ->capture_default_str();
    cmd->add_option("--decode-tokens", options->decode_tokens,
                    "Tokens generated per sequence for the decode figures")
        ->check(CLI::Range(2, 100000))
        ->capture_default_str();
    cmd->add_option("--concurrency", options->concurrency,
                    "Concurrent sequences for the aggregate decode and load figures")
        ->check(CLI::Range(1, 1024))
        ->capture_default_str();
    cmd->add_option("--generate-batches", options->generate_batches,
                    "Requests submitted together for the wall-time generate figures (the seed "
                    "stack's method: generated tokens over wall time, prefill included); none by "
                    "default")
        ->check(CLI::Range(1, 1024));
    cmd->add_option("--generate-prompt", options->generate_prompt,
                    "Prompt tokens per generate-figure request")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    cmd->add_option("--generate-new-tokens", options->generate_new_tokens,
                    "Generated tokens per generate-figure request")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    cmd->add_option("--load-prompt", options->load_prompt, "Prompt tokens per load-test request")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    cmd->add_option("--load-new-tokens", options->load_new_tokens,
                    "Generated tokens per load-test request")
        ->check(CLI::Range(2, 100000))
        ->capture_default_str();
    cmd->add_option("--load-rounds", options->load_rounds, "Requests per client in the load test")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    cmd->add_option("--repeats", options->repeats, "Runs per figure (the median is shown)")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    cmd->add_option("--json", options->json_file, "Also write the figures as JSON to this file");
    cmd->callback([options] {
        if (options->model.resolve_settings()) run_bench(*options);
    });
}

}  // namespace llmserve::cli
