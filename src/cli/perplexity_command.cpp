// `llmserve perplexity`: the quality a model and weight format reach on a text file, by strided
// evaluation (as in Hugging Face's "perplexity of fixed-length models"): windows of --context
// tokens every --stride tokens, positions restarting at 0 in each window; every token after the
// first is scored exactly once, by the first window that reaches it, with at least
// context - stride tokens before it. Perplexity = exp(mean negative log-likelihood).
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>

#include "backend/cpu/cpu_features.h"
#include "cli/commands.h"
#include "cli/model_options.h"
#include "common/error.h"
#include "engine/sampling/logprobs.h"
#include "model/model.h"

namespace llmserve::cli {
namespace {

constexpr int kChunkRows = 128;  // rows per forward pass: bounds the logits buffer
constexpr int kBlockTokens = 16;

struct PerplexityOptions {
    ModelOptions model;
    std::string file;
    int context = 0;  // 0: the model's n_positions
    int stride = 0;   // 0: context / 2
    int max_tokens = 0;
};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(ErrorCode::kNotFound, "cannot open text file '{}'", path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

void run_perplexity(const PerplexityOptions& options) {
    const std::string model_dir = options.model.resolved_model_dir();
    const auto model = options.model.load_model(model_dir);
    const auto tokenizer = load_tokenizer(model_dir);
    std::vector<std::int32_t> ids = tokenizer->encode(read_file(options.file));
    if (options.max_tokens > 0 && static_cast<int>(ids.size()) > options.max_tokens)
        ids.resize(options.max_tokens);
    const int total = static_cast<int>(ids.size());
    if (total < 2)
        fail_param("file", "'{}' holds {} tokens; perplexity needs at least 2", options.file,
                   total);
    const model::ModelConfig& config = model->config();
    const int context = options.context > 0 ? options.context : config.n_positions;
    if (context < 2 || context > config.n_positions)
        fail_param("context", "--context {} must be between 2 and the model's {} positions",
                   context, config.n_positions);
    const int stride = options.stride > 0 ? options.stride : std::max(1, context / 2);
    if (stride > context)
        fail_param("stride", "--stride {} must not exceed --context {}", stride, context);

    backend::Backend& backend = model->backend();
    const int blocks = (context + kBlockTokens - 1) / kBlockTokens;
    auto kv = backend.allocate_kv(config.n_layer, blocks, kBlockTokens, config.kv_dim(),
                                  options.model.kv_format());
    std::vector<int> table(blocks);
    for (int b = 0; b < blocks; ++b) table[b] = b;
    const int chunk_rows = std::min(kChunkRows, context);
    model::Workspace workspace(backend, config, chunk_rows, chunk_rows);
    std::vector<float> logits;

    const auto started = std::chrono::steady_clock::now();
    double nll_sum = 0.0;
    std::size_t scored = 0;
    int windows = 0;
    for (int begin = 0, scored_until = 1;; begin += stride) {
        const int end = std::min(begin + context, total);
        for (int chunk = begin; chunk < end; chunk += chunk_rows) {
            model::Batch batch;
            batch.block_tables.emplace_back(table);
            std::vector<int> targets;
            for (int index = chunk; index < std::min(end, chunk + chunk_rows); ++index) {
                if (index + 1 >= scored_until && index + 1 < end) {
                    batch.logits_rows.push_back(static_cast<int>(batch.tokens.size()));
                    targets.push_back(ids[index + 1]);
                }
                batch.tokens.push_back(ids[index]);
                batch.positions.push_back(index - begin);
                batch.row_sequence.push_back(0);
            }
            logits.resize(targets.size() * static_cast<std::size_t>(config.vocab_size));
            model->forward(batch, *kv, workspace, logits);
            for (std::size_t i = 0; i < targets.size(); ++i)
                nll_sum -= engine::token_logprob(
                    std::span(logits).subspan(i * config.vocab_size, config.vocab_size),
                    targets[i]);
            scored += targets.size();
        }
        scored_until = end;
        ++windows;
        if (end == total) break;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::cout << fmt::format(
        "perplexity {:.4f}  ({} tokens scored, {} windows of up to {} tokens, stride {})\n",
        std::exp(nll_sum / static_cast<double>(scored)), scored, windows, context, stride);
    const std::string device =
        backend.name() == "cpu"
            ? fmt::format("cpu ({} kernels, {} threads)",
                          backend::cpu::to_string(backend::cpu::default_isa()), backend.threads())
            : backend.name();
    std::cout << fmt::format("model {}, weights {} (stored {}), KV cache {}, {}, {:.1f} s\n",
                             model->name(), model->compute_summary(), model->stored_summary(),
                             options.model.kv_cache_dtype, device, seconds);
}

}  // namespace

void register_perplexity_command(CLI::App& app) {
    auto options = std::make_shared<PerplexityOptions>();
    CLI::App* cmd = app.add_subcommand(
        "perplexity", "Perplexity of the model on a text file (strided evaluation)");
    options->model.add_to(*cmd);
    // Checked when the command runs, so that --print-config works without it.
    cmd->add_option("--file", options->file, "UTF-8 text file to evaluate (required)");
    cmd->add_option("--context", options->context,
                    "Tokens per window (default: the model's context length)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--stride", options->stride, "Tokens between windows (default: context / 2)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--max-tokens", options->max_tokens,
                    "Evaluate only the first N tokens of the file (0 = all)")
        ->check(CLI::NonNegativeNumber);
    cmd->callback([options] {
        if (!options->model.resolve_settings()) return;
        if (options->file.empty()) fail_param("file", "--file is required: the text to evaluate");
        run_perplexity(*options);
    });
}

}  // namespace llmserve::cli
