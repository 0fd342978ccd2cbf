// What /info and /metrics report about the loaded model and the engine.
#pragma once

#include <nlohmann/json.hpp>

#include "server/serving_state.h"

namespace llmserve::server {

// GET /info: version, the model and its architecture spec, whether it has a chat template,
// request defaults and limits, auth and rate limit settings.
nlohmann::json info_json(const ServingState& state, bool auth_enabled);

// Sets the gauges and engine counters /metrics shows from the current state.
void refresh_gauges(ServingState& state);

}  // namespace llmserve::server
