#include "cli/model_options.h"

#include <cstdlib>

#include "common/error.h"

namespace llmserve::cli {

std::string embedded_model_dir() {
    return LLMSERVE_EMBEDDED_MODEL_DIR;
}

void ModelOptions::add_to(CLI::App& command) {
    command.add_option("--model", model_dir,
                       "Model directory (default: $MODEL_NAME, else the embedded model)");
    command.add_option("--threads", threads, "Worker threads (0 = one per core)")
        ->check(CLI::NonNegativeNumber);
    command.add_option("--dtype", dtype, "Weight format for compute: auto, f32")
        ->check(CLI::IsMember({"auto", "f32", "f16", "bf16"}));
}

std::string ModelOptions::resolved_model_dir() const {
    if (!model_dir.empty()) return model_dir;
    if (const char* env = std::getenv("MODEL_NAME"); env != nullptr && *env != '\0') return env;
    return embedded_model_dir();
}

std::shared_ptr<const model::Gpt2Model> ModelOptions::load_model() const {
    model::LoadOptions options;
    options.backend = backend::make_cpu_backend(threads);
    options.weight_format = backend::parse_weight_format(dtype);
    return model::Gpt2Model::load(resolved_model_dir(), options);
}

std::shared_ptr<const tokenizer::Tokenizer> load_tokenizer(const std::string& model_dir) {
    return std::make_shared<const tokenizer::Tokenizer>(
        tokenizer::Tokenizer::from_directory(model_dir));
}

}  // namespace llmserve::cli
