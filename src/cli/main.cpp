// llmserve: serve, generate, tokenize, detokenize, bench, perplexity, download, models.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/serve_command.h"
#include "common/error.h"

// Exit statuses, as POSIX utilities use them: 0 success, 1 failure, 2 usage error.
constexpr int kUsageError = 2;

int main(int argc, char** argv) {
    CLI::App app{
        "llmserve: a C++ inference server for Hugging Face decoder language models (GPT-2, Llama, "
        "Mistral, Qwen2, Qwen3)"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string(LLMSERVE_VERSION));
    llmserve::cli::register_serve_command(app);
    llmserve::cli::register_generate_command(app);
    llmserve::cli::register_tokenize_commands(app);
    llmserve::cli::register_bench_command(app);
    llmserve::cli::register_perplexity_command(app);
    llmserve::cli::register_hub_commands(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version exit 0; every other parse error is a usage error. CLI11's own codes
        // (106, 109, ...) mean nothing to shells and scripts.
        return app.exit(e) == 0 ? 0 : kUsageError;
    } catch (const llmserve::Error& e) {
        std::cerr << "llmserve: error: " << e.what() << "\n";
        // An option value out of its range is a usage error too; anything else failed at run time.
        return e.code() == llmserve::ErrorCode::kInvalidArgument ? kUsageError : 1;
    } catch (const std::exception& e) {
        std::cerr << "llmserve: unexpected error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
