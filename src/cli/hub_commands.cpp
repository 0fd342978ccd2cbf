// `llmserve download` and `llmserve models`: the Hugging Face cache, shared with transformers.
#include <fmt/format.h>

#include <iostream>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "hub/hub.h"
#include "hub/progress.h"

namespace llmserve::cli {

void register_hub_commands(CLI::App& app) {
    auto name = std::make_shared<std::string>();
    CLI::App* download = app.add_subcommand("download",
                                            "Download a model from the Hugging Face Hub into the "
                                            "cache (HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE)");
    download
        ->add_option("model", *name,
                     "Hub name, e.g. gpt2, openai-community/gpt2, org/name@revision")
        ->required();
    download->callback([name] {
        auto progress = hub::make_stderr_progress();
        const auto dir =
            hub::download_model(hub::ModelRef::parse(*name), hub_options(), progress.get());
        std::cout << dir.string() << "\n";
    });

    CLI::App* models = app.add_subcommand("models", "List the models in the Hugging Face cache");
    models->callback([] {
        const auto cached = hub::list_cached_models(hub_options());
        if (cached.empty()) std::cout << "no cached models\n";
        for (const auto& model : cached) {
            std::string revisions;
            for (const auto& r : model.revisions) revisions += (revisions.empty() ? "" : ", ") + r;
            std::cout << fmt::format("{:40} {:>10}  {}  ({})\n", model.repo_id,
                                     hub::format_bytes(model.size_bytes), revisions,
                                     model.path.string());
        }
    });
}

}  // namespace llmserve::cli
