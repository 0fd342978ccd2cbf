#include "cli/model_options.h"

#include <cstdlib>
#include <iostream>

#include "backend/device.h"
#include "common/error.h"
#include "hub/hub.h"
#include "hub/progress.h"

namespace llmserve::cli {

std::string embedded_model_dir() {
    return LLMSERVE_EMBEDDED_MODEL_DIR;
}

void ModelOptions::add_model_name_to(CLI::App& command) {
    bind("MODEL_NAME",
         command.add_option("--model", model_dir,
                            "Model directory or Hugging Face name, e.g. gpt2 or org/name@rev "
                            "(default: $MODEL_NAME, else the embedded model)"));
    command.add_flag("--print-config", print_config,
                     "Print the effective settings and where each value came from (default, "
                     "environment, flag), then exit");
}

void ModelOptions::add_to(CLI::App& command) {
    add_model_name_to(command);
    bind("DEVICE", command
                       .add_option("--device", device,
                                   "auto (CUDA when built with it and a GPU is visible), cpu, "
                                   "cuda, cuda:N [DEVICE]")
                       ->capture_default_str());
    bind("THREADS",
         command.add_option("--threads", threads, "Worker threads (0 = one per core) [THREADS]")
             ->check(CLI::NonNegativeNumber));
    bind("DTYPE", command
                      .add_option("--dtype", dtype,
                                  "Weight format for compute: auto (as stored), f32, f16, bf16, "
                                  "q8, q4 [DTYPE]")
                      ->check(CLI::IsMember({"auto", "f32", "f16", "bf16", "q8", "q4"})));
    bind("KV_CACHE_DTYPE",
         command
             .add_option("--kv-cache-dtype", kv_cache_dtype,
                         "KV cache format: f32, or f16 (half the memory and attention traffic) "
                         "[KV_CACHE_DTYPE]")
             ->check(CLI::IsMember({"f32", "f16"}))
             ->capture_default_str());
    bind("CUDA_GRAPHS", command
                            .add_option("--cuda-graphs", cuda_graphs,
                                        "on: the CUDA backend replays decode steps as CUDA "
                                        "graphs; off: launches every kernel (for comparison) "
                                        "[CUDA_GRAPHS]")
                            ->check(CLI::IsMember({"on", "off"}))
                            ->capture_default_str());
}

bool ModelOptions::resolve_settings() {
    std::map<std::string, std::string, std::less<>> given;
    server::SettingNames names = {"CACHE_DIR"};
    for (const auto& [name, option] : setting_flags) {
        names.push_back(name);
        if (option->count() > 0) given[name] = option->results().back();
    }
    server::ServerConfig defaults;
    defaults.model_name = embedded_model_dir();
    settings = server::resolve_config(server::process_environment(), given, defaults, names);
    if (print_config) {
        std::cout << server::describe_config(settings, names);
        return false;
    }
    model_dir = settings.model_name;
    device = settings.device;
    threads = settings.threads;
    dtype = backend::to_string(settings.dtype);
    kv_cache_dtype = backend::to_string(settings.kv_cache_dtype);
    cuda_graphs = settings.cuda_graphs ? "on" : "off";
    return true;
}

hub::HubOptions hub_options() {
    hub::HubOptions options = hub::HubOptions::from_environment();
    if (const char* cache = std::getenv("CACHE_DIR"); cache != nullptr && *cache != '\0')
        options.extra_cache_dirs.emplace_back(cache);
    return options;
}

std::string ModelOptions::resolved_model_dir() const {
    // A directory as is; a Hub name through the Hugging Face cache, downloading when needed.
    auto progress = hub::make_stderr_progress();
    return hub::resolve_model(model_dir, hub_options(), progress.get()).string();
}

std::shared_ptr<const model::Model> ModelOptions::load_model(const std::string& dir) const {
    model::LoadOptions options;
    options.backend = make_backend();
    options.weight_format = backend::parse_weight_format(dtype);
    return model::Model::load(dir, options);
}

std::shared_ptr<backend::Backend> ModelOptions::make_backend() const {
    backend::DeviceChoice choice =
        backend::select_device(device, {.threads = threads, .cuda_graphs = cuda_graphs == "on"});
    std::cerr << "llmserve: " << choice.reason << "\n";
    return choice.backend;
}

std::shared_ptr<const tokenizer::Tokenizer> load_tokenizer(const std::string& model_dir) {
    return std::make_shared<const tokenizer::Tokenizer>(
        tokenizer::Tokenizer::from_directory(model_dir));
}

}  // namespace llmserve::cli
