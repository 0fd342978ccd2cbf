#include "engine/generation_settings.h"

namespace llmserve::engine {

GenerationSettings resolve_generation_settings(const ExplicitSettings& explicit_settings,
                                               const model::GenerationDefaults& model_defaults) {
    GenerationSettings settings;
    // (generation_config.json's values are floats: value_or would round the built-in ones.)
    if (model_defaults.temperature) settings.temperature = *model_defaults.temperature;
    if (model_defaults.do_sample == false) settings.temperature = 0.0;
    if (model_defaults.top_p) settings.top_p = *model_defaults.top_p;
    settings.top_k = model_defaults.top_k.value_or(settings.top_k);
    settings.repetition_penalty =
        model_defaults.repetition_penalty.value_or(settings.repetition_penalty);
    settings.max_new_tokens = explicit_settings.max_new_tokens.value_or(settings.max_new_tokens);
    settings.temperature = explicit_settings.temperature.value_or(settings.temperature);
    settings.top_p = explicit_settings.top_p.value_or(settings.top_p);
    return settings;
}

}  // namespace llmserve::engine
