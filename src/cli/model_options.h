// Options shared by the commands that load a model: where it is, how many threads, which weight
// and KV cache formats. They are settings of `serve`'s table (server/config.h): each flag falls
// back to the same environment variable (MODEL_NAME, DEVICE, THREADS, DTYPE, ...) and both are
// validated there, and --print-config shows the effective values.
#pragma once

#include <CLI/CLI.hpp>

#include <map>
#include <memory>
#include <string>

#include "hub/hub.h"
#include "model/model.h"
#include "server/config.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::cli {

struct ModelOptions {
    std::string model_dir;  // a directory or Hub name; empty: $MODEL_NAME, else the embedded model
    std::string device = "auto";
    int threads = 0;  // 0: one per core
    std::string dtype = "auto";
    std::string kv_cache_dtype = "f32";
    std::string cuda_graphs = "on";

    // The flags add_to registers and those a command binds, by setting name ("TEMPERATURE").
    std::map<std::string, CLI::Option*, std::less<>> setting_flags;
    bool print_config = false;
    // The effective settings once resolve_settings() ran (those not bound keep their defaults).
    server::ServerConfig settings;

    // Registers the model flags and --print-config.
    void add_to(CLI::App& command);
    // Registers only --model and --print-config (commands that need the tokenizer alone).
    void add_model_name_to(CLI::App& command);
    // Makes `option` the flag of the setting `name` (its value then goes through the table).
    void bind(std::string name, CLI::Option* option) { setting_flags[std::move(name)] = option; }
    // Resolves the bound settings (flag > environment > default) into `settings` and the fields
    // above. Returns false when --print-config asked for them instead: they were printed and
    // the command has nothing more to do. Throws Error(kInvalidArgument) naming a bad value.
    bool resolve_settings();
    std::string resolved_model_dir() const;
    std::shared_ptr<backend::Backend> make_backend()
        const;  // per --device, saying which and why on stderr
    std::shared_ptr<const model::Model> load_model(
        const std::string& dir) const;  // dir: resolved_model_dir()
    backend::KvFormat kv_format() const { return backend::parse_kv_format(kv_cache_dtype); }
};

// Hub settings from HF_* variables, with the service's CACHE_DIR as an extra cache root.
hub::HubOptions hub_options();

// The directory of the model that ships with llmserve (models/gpt2-brown-mini in the source tree).
std::string embedded_model_dir();

std::shared_ptr<const tokenizer::Tokenizer> load_tokenizer(const std::string& model_dir);

}  // namespace llmserve::cli
