#include "backend/cpu/row_ops.h"

#include <cmath>

namespace llmserve::backend::cpu {

void rms_norm_row(const float* x, const float* gamma, float eps, int cols, float* y) {
    double squares = 0.0;
    for (int c = 0; c < cols; ++c) squares += static_cast<double>(x[c]) * x[c];
    const float inverse =
        1.0f / std::sqrt(static_cast<float>(squares / cols) + eps);  // as rsqrt in float32
    for (int c = 0; c < cols; ++c) y[c] = gamma[c] * (x[c] * inverse);
}

void rotary_angles(int position, const float* inv_freq, int half, float factor, float* cos,
                   float* sin) {
    const auto p = static_cast<float>(position);
    for (int i = 0; i < half; ++i) {
        const float angle = p * inv_freq[i];
        cos[i] = std::cos(angle) * factor;
        sin[i] = std::sin(angle) * factor;
    }
}

void rotate_head(float* x, const float* cos, const float* sin, int half) {
    for (int i = 0; i < half; ++i) {
        const float first = x[i], second = x[i + half];
        x[i] = first * cos[i] - second * sin[i];
        x[i + half] = second * cos[i] + first * sin[i];
    }
}

void multiply(float* gate, const float* up, int count) {
    for (int i = 0; i < count; ++i) gate[i] *= up[i];
}

}  // namespace llmserve::backend::cpu
