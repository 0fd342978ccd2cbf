#include "model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace llmserve::model {
namespace {

// base ** (2i / dim) for i < dim / 2, with the exponent in float32 as torch computes it.
std::vector<float> position_frequencies(double base, int dim) {
    std::vector<float> frequencies(dim / 2);
    for (int i = 0; i < dim / 2; ++i) {
        const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
        frequencies[i] = static_cast<float>(std::pow(static_cast<float>(base), exponent));
    }
    return frequencies;
}

double yarn_mscale(double scale, double m) {
    return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
}

void apply_yarn(const RopeConfig& rope, int dim, RotaryTable& table) {
    const double factor = rope.factor;
    if (rope.attention_factor) {
        table.attention_factor = static_cast<float>(*rope.attention_factor);
    } else if (rope.mscale && rope.mscale_all_dim && *rope.mscale != 0.0 &&
               *rope.mscale_all_dim != 0.0) {
        table.attention_factor = static_cast<float>(yarn_mscale(factor, *rope.mscale) /
                                                    yarn_mscale(factor, *rope.mscale_all_dim));
    } else {
        table.attention_factor = static_cast<float>(yarn_mscale(factor, 1.0));
    }
    const double beta_fast = rope.beta_fast.value_or(32.0),
                 beta_slow = rope.beta_slow.value_or(1.0);
    const double original = rope.original_max_position_embeddings;
    auto correction_dim = [&](double rotations) {
        return dim * std::log(original / (rotations * 2.0 * std::numbers::pi)) /
               (2.0 * std::log(rope.theta));
    };
    double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
    if (rope.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dim - 1));
    if (low == high) high += 0.001;
    const std::vector<float> frequencies = position_frequencies(rope.theta, dim);
    for (int i = 0; i < dim / 2; ++i) {
        const float ramp = std::clamp(
            static_cast<float>((static_cast<float>(i) - low) / (high - low)), 0.0f, 1.0f);
        const float extrapolation = 1.0f / frequencies[i];
        const float interpolation = 1.0f / (static_cast<float>(factor) * frequencies[i]);
        const float extrapolation_weight = 1.0f - ramp;
        table.inv_freq[i] =
            interpolation * (1.0f - extrapolation_weight) + extrapolation * extrapolation_weight;
    }
}

void apply_llama3(const RopeConfig& rope, RotaryTable& table) {
    const auto factor = static_cast<float>(rope.factor);
    const auto low = static_cast<float>(rope.low_freq_factor);
    const auto high = static_cast<float>(rope.high_freq_factor);
    const auto original = static_cast<float>(rope.original_max_position_embeddings);
    const float low_freq_wavelen = original / low, high_freq_wavelen = original / high;
    for (float& inv_freq : table.inv_freq) {
        const float wavelen = static_cast<float>(2.0 * std::numbers::pi) / inv_freq;
        const float scaled = wavelen > low_freq_wavelen ? inv_freq / factor : inv_freq;
        if (wavelen < high_freq_wavelen || wavelen > low_freq_wavelen) {
            inv_freq = scaled;
            continue;
        }
        const float smooth = (original / wavelen - low) / (high - low);
        inv_freq = (1.0f - smooth) * scaled / factor + smooth * scaled;
    }
}

}  // namespace

RotaryTable rotary_table(const RopeConfig& rope) {
    const int dim = rope.rotary_dim;
    RotaryTable table;
    const std::vector<float> frequencies = position_frequencies(rope.theta, dim);
    table.inv_freq.resize(dim / 2);
    for (int i = 0; i < dim / 2; ++i) table.inv_freq[i] = 1.0f / frequencies[i];
    switch (rope.type) {
        case RopeType::kDefault:
        case RopeType::kDynamic:  // equal to default inside max_position_embeddings
            break;
        case RopeType::kLinear:
            for (float& inv_freq : table.inv_freq) inv_freq /= static_cast<float>(rope.factor);
            break;
        case RopeType::kYarn:
            apply_yarn(rope, dim, table);
            break;
        case RopeType::kLlama3:
            apply_llama3(rope, table);
            break;
    }
    for (std::size_t i = 0; i < rope.frequency_divisors.size() && i < table.inv_freq.size(); ++i)
        table.inv_freq[i] /= rope.frequency_divisors[i];
    return table;
}

}  // namespace llmserve::model
