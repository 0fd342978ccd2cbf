// Helpers shared by the sampling tests: reference softmax and deterministic random rows.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace llmserve::engine::testing {

// Softmax in double; -inf entries get probability 0.
inline std::vector<double> softmax(const std::vector<float>& logits) {
    double best = -std::numeric_limits<double>::infinity();
    for (float logit : logits) best = std::max(best, static_cast<double>(logit));
    std::vector<double> probs(logits.size(), 0.0);
    double total = 0.0;
    for (std::size_t i = 0; i < logits.size(); ++i) {
        if (std::isinf(logits[i]) && logits[i] < 0) continue;
        probs[i] = std::exp(static_cast<double>(logits[i]) - best);
        total += probs[i];
    }
    for (double& prob : probs) prob /= total;
    return probs;
}

// Logits drawn from N(0, scale^2) with a seeded mt19937 (whose raw output the standard fixes);
// the normal variates come from our own Box-Muller so that rows are the same everywhere.
inline std::vector<float> random_logits(std::size_t vocab, std::uint32_t seed, double scale) {
    std::mt19937 engine(seed);
    const auto unit = [&] { return (static_cast<double>(engine()) + 0.5) / 4294967296.0; };
    std::vector<float> logits(vocab);
    for (float& logit : logits) {
        logit = static_cast<float>(scale * std::sqrt(-2.0 * std::log(unit())) *
                                   std::cos(6.283185307179586 * unit()));
    }
    return logits;
}

inline bool removed(float logit) {
    return std::isinf(logit) && logit < 0;
}

}  // namespace llmserve::engine::testing
