#include "engine/sampling/sampler.h"

#include <algorithm>
#include <limits>
#include <random>

#include "common/error.h"
#include "engine/sampling/vector_math.h"

namespace llmserve::engine {
namespace {

std::uint64_t splitmix64(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

std::uint64_t rotate_left(std::uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

[[noreturn]] void fail_no_finite_logit(std::size_t vocab) {
    fail(ErrorCode::kInvalidArgument,
         "cannot choose a token: none of the {} processed logits is finite (every token was "
         "removed, or the row holds NaN)",
         vocab);
}

}  // namespace

Rng::Rng(std::uint64_t seed) {
    for (std::uint64_t& word : state_) word = splitmix64(seed);
}

std::uint64_t Rng::next_u64() {
    const std::uint64_t result = rotate_left(state_[1] * 5, 7) * 9;
    const std::uint64_t shifted = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= shifted;
    state_[3] = rotate_left(state_[3], 45);
    return result;
}

double Rng::next_unit() {
    return static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index) {
    if (index == 0) return seed;
    std::uint64_t state = seed ^ (index * 0xd1b54a32d192ed03ULL);
    return splitmix64(state);
}

std::uint64_t random_seed() {
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device();
}

TokenId Sampler::sample(std::span<const float> processed_logits, bool greedy) {
    const float best = detail::max_value(processed_logits);
    if (best == -std::numeric_limits<float>::infinity()) {
        fail_no_finite_logit(processed_logits.size());
    }
    if (greedy) {
        const auto first = std::find(processed_logits.begin(), processed_logits.end(), best);
        return static_cast<TokenId>(first - processed_logits.begin());
    }

    // Inverse CDF in blocks: the total and the running sum add the same block sums in the same
    // order, so the walk reaches the total exactly and never runs past the last block.
    const double total = detail::sum_exp(processed_logits, best);
    const double target = rng_.next_unit() * total;
    float weights[detail::kBlock];
    double cumulative = 0.0;
    std::size_t last_positive = 0;
    for (std::size_t begin = 0; begin < processed_logits.size(); begin += detail::kBlock) {
        const std::span<const float> block = processed_logits.subspan(
            begin, std::min(detail::kBlock, processed_logits.size() - begin));
        const double block_sum = detail::exp_block(block, best, weights);
        if (block_sum == 0.0) continue;
        if (cumulative + block_sum > target) {
            double running = cumulative;
            for (std::size_t j = 0; j < block.size(); ++j) {
                if (weights[j] == 0.0f) continue;
                last_positive = begin + j;
                running += weights[j];
                if (running > target) return static_cast<TokenId>(begin + j);
            }
            // Summed one by one the block fell a rounding error short: its last token.
            return static_cast<TokenId>(last_positive);
        }
        cumulative += block_sum;
        for (std::size_t j = block.size(); j-- > 0;) {
            if (weights[j] != 0.0f) {
                last_positive = begin + j;
                break;
            }
        }
    }
    return static_cast<TokenId>(last_positive);  // target rounded up to the total itself
}

}  // namespace llmserve::engine
