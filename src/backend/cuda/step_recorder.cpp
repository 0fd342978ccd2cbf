#include "backend/cuda/step_recorder.h"

#include <algorithm>
#include <bit>

namespace llmserve::backend::cuda {

std::size_t staging_capacity(std::size_t count) {
    return std::bit_ceil(std::max<std::size_t>(count, 16));
}

void StepRecorder::clear() {
    signature_ = kEmptySignature;
    record_.clear();
    staged_.clear();
    has_last_ = false;
    host_copies_.clear();
}

void StepRecorder::mix(const unsigned char* bytes, std::size_t count) {
    record_.insert(record_.end(), bytes, bytes + count);
    // FNV-1a, 64-bit: a cache key only; a replay compares whole records.
    constexpr std::uint64_t kPrime = 1099511628211ull;
    for (std::size_t i = 0; i < count; ++i) signature_ = (signature_ ^ bytes[i]) * kPrime;
}

std::size_t StepRecorder::stage(std::span<const int> values) {
    const std::size_t offset = staged_.size();
    const std::size_t capacity = staging_capacity(values.size());
    staged_.insert(staged_.end(), values.begin(), values.end());
    staged_.resize(offset + capacity, 0);
    last_offset_ = offset;
    last_count_ = values.size();
    has_last_ = true;
    note(offset, capacity);
    return offset;
}

std::optional<std::size_t> StepRecorder::find_last(std::span<const int> values) const {
    if (!has_last_ || last_count_ != values.size() ||
        !std::equal(values.begin(), values.end(), staged_.begin() + last_offset_))
        return std::nullopt;
    return last_offset_;
}

void StepRecorder::defer_copy(const HostCopy& copy) {
    host_copies_.push_back(copy);
}

}  // namespace llmserve::backend::cuda
