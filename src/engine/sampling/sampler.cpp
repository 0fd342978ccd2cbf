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

    // Inverse CDF in two levels: the block sums locate the block where the cumulative sum
    // passes the target, then only that block's exponentials are recomputed and walked. The
    // total and the running sum add the same block sums in the same order.
    block_sums_.resize(detail::block_count(processed_logits.size()));
    detail::block_sums(processed_logits, best, block_sums_);
    double total = 0.0;
    for (double block_sum : block_sums_) total += block_sum;
    const double target = rng_.next_unit() * total;

    double cumulative = 0.0;
    std::size_t block = 0;
    std::size_t last_nonempty = 0;
    for (; block < block_sums_.size(); ++block) {
        if (block_sums_[block] == 0.0) continue;
        last_nonempty = block;
        if (cumulative + block_sums_[block] > target) break;
        cumulative += block_sums_[block];
    }
    // target rounded up to the total itself: the last token of weight > 0.
    const bool past_end = block == block_sums_.size();
    if (past_end) block = last_nonempty;

    const std::size_t begin = block * detail::kBlock;
    const std::span<const float> logits =
        processed_logits.subspan(begin, std::min(detail::kBlock, processed_logits.size() - begin));
    float weights[detail::kBlock];
    detail::exp_block(logits, best, weights);
    std::size_t chosen = 0;
    for (std::size_t j = 0; j < logits.size(); ++j) {
        if (weights[j] == 0.0f) continue;
        chosen = j;  // when the block falls a rounding error short: its last token
        cumulative += weights[j];
        if (!past_end && cumulative > target) break;
    }
    return static_cast<TokenId>(begin + chosen);
}

}  // namespace llmserve::engine
