// The defaults of a request's generation settings, in one place, and how they combine. Precedence
// (documented in docs/API.md): the request itself, then an explicit server setting (environment
// variable or flag), then the model's generation_config.json, then the built-in values below.
#pragma once

#include <optional>

#include "model/config.h"

namespace llmserve::engine {

struct GenerationSettings {
    int max_new_tokens = 100;         // MAX_LENGTH
    double temperature = 0.7;         // TEMPERATURE
    double top_p = 0.9;               // TOP_P
    int top_k = 0;                    // off
    float repetition_penalty = 1.0f;  // off
};

// Settings given explicitly to the server or CLI; unset ones fall through.
struct ExplicitSettings {
    std::optional<int> max_new_tokens;
    std::optional<double> temperature, top_p;
};

// The built-in settings overridden by generation_config.json (its temperature, top_p, top_k and
// repetition_penalty; "do_sample": false makes greedy decoding the default, as in transformers),
// then by the explicit settings.
GenerationSettings resolve_generation_settings(const ExplicitSettings& explicit_settings,
                                               const model::GenerationDefaults& model_defaults);

}  // namespace llmserve::engine
