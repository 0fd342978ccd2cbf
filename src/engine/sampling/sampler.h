// Per-sequence token choice: greedy argmax or a seeded inverse-CDF draw from the processed row.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/sampling/sampling_params.h"

namespace llmserve::engine {

// xoshiro256** (Blackman & Vigna), state expanded from a 64-bit seed with splitmix64. Defined
// entirely by integer arithmetic, so a seed gives the same stream on every platform.
class Rng {
  public:
    explicit Rng(std::uint64_t seed);
    std::uint64_t next_u64();
    // Uniform in [0, 1) with 53 random bits: the top 53 bits of next_u64() times 2^-53.
    double next_unit();

  private:
    std::array<std::uint64_t, 4> state_;
};

// A well-mixed seed for the `index`-th sequence of a request seeded with `seed` (n > 1), so that
// sibling sequences draw independent streams and sequence 0 keeps the request's own seed.
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index);

// A fresh seed from std::random_device, for requests that did not give one (the engine reports
// it so the request can be replayed).
std::uint64_t random_seed();

class Sampler {
  public:
    explicit Sampler(std::uint64_t seed) : rng_(seed) {}

    // processed_logits: [vocab], the output of LogitsProcessor::process (removed = -inf).
    // greedy: the argmax, lowest id among equal maxima; draws nothing from the RNG.
    // Otherwise: one uniform u from the RNG and the first token whose cumulative softmax
    // probability (in id order) exceeds u. Throws kInvalidArgument when no logit is finite.
    TokenId sample(std::span<const float> processed_logits, bool greedy);

  private:
    Rng rng_;
    std::vector<double> block_sums_;  // scratch: vocab / 256 entries
};

}  // namespace llmserve::engine
