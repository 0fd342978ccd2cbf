// The inverse frequencies of a rotary embedding, computed in float32 the way transformers'
// modeling_rope_utils does for each rope type.
#pragma once

#include <vector>

#include "model/config.h"

namespace llmserve::model {

struct RotaryTable {
    std::vector<float> inv_freq;    // [rotary_dim / 2]
    float attention_factor = 1.0f;  // yarn's scaling of cos and sin; 1 otherwise
};

RotaryTable rotary_table(const RopeConfig& rope);

}  // namespace llmserve::model
