// Small per-row ops of the decoder (RMSNorm, rotary embedding, the gated MLP's product), plain C++
// compiled for baseline x86-64: their cost is linear in the row, next to products that stream
// whole weight matrices, so they need no per-ISA copies.
#pragma once

namespace llmserve::backend::cpu {

// y = x / sqrt(mean(x²) + eps) * gamma over `cols` values (sum of squares in double). y may alias
// x.
void rms_norm_row(const float* x, const float* gamma, float eps, int cols, float* y);

// cos[i], sin[i] for i < half: of the float32 angle position * inv_freq[i], times factor.
void rotary_angles(int position, const float* inv_freq, int half, float factor, float* cos,
                   float* sin);

// Rotates the first 2 * half values of one head in place, rotate_half style: x[i] pairs with
// x[i + half].
void rotate_head(float* x, const float* cos, const float* sin, int half);

// gate[i] *= up[i] for i < count (after the activation has been applied to gate).
void multiply(float* gate, const float* up, int count);

}  // namespace llmserve::backend::cpu
