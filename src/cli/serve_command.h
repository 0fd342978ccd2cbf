// `llmserve serve`: the HTTP server on one model. Configuration comes from environment variables
// (MODEL_NAME, PORT, API_KEYS, ...) overridden by flags (--model, --port, --api-keys, ...);
// `--print-config` shows the effective values and where each came from.
#pragma once

#include <CLI/CLI.hpp>

namespace llmserve::cli {

void register_serve_command(CLI::App& app);

}  // namespace llmserve::cli
