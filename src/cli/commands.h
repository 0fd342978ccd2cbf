// Each `llmserve` subcommand registers itself on the CLI11 app.
#pragma once

#include <CLI/CLI.hpp>

namespace llmserve::cli {

void register_generate_command(CLI::App& app);
void register_tokenize_commands(CLI::App& app);
void register_bench_command(CLI::App& app);
void register_perplexity_command(CLI::App& app);
void register_hub_commands(CLI::App& app);

}  // namespace llmserve::cli
