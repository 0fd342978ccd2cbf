// Options shared by the commands that load a model: where it is, how many threads, which weight
// and KV cache formats.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "hub/hub.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::cli {

struct ModelOptions {
    std::string model_dir;  // a directory or Hub name; empty: $MODEL_NAME, else the embedded model
    std::string device = "auto";
    int threads = 0;  // 0: one per core
    std::string dtype = "auto";
    std::string kv_cache_dtype = "f32";
    std::string cuda_graphs = "on";

    void add_to(CLI::App& command);
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
