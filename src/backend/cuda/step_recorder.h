// Host-side bookkeeping that lets the CUDA backend replay a recorded forward pass (a CUDA graph):
// a signature of every call's arguments, and the pass's integer inputs (token ids, positions,
// block tables, rows) staged at offsets that depend only on the calls, so that a graph captured
// from one pass reads the next pass's inputs from the same device addresses. No CUDA here, so the
// rules are unit-tested on any machine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

namespace llmserve::backend::cuda {

// Room given to a staged input of `count` ints: the next power of two, at least 16. Block tables
// grow a block at a time; rounding up lets one graph serve many steps before a longer table
// needs a graph of its own.
std::size_t staging_capacity(std::size_t count);

class StepRecorder {
  public:
    // Forgets the previous pass: signature, staged inputs and deferred copies.
    void clear();

    // Appends the bytes of trivially copyable values (pointers, sizes, scalars) to the pass's
    // record. Two passes with equal records issue the same work on the same memory; the signature
    // is the record's hash, for looking graphs up.
    template <typename... Values>
    void note(const Values&... values) {
        (mix_value(values), ...);
    }
    std::uint64_t signature() const { return signature_; }
    std::span<const unsigned char> record() const { return record_; }

    // Appends `values`, zero-padded to staging_capacity(values.size()) ints, and returns their
    // offset in ints. The offset and the capacity (not the values) enter the signature.
    std::size_t stage(std::span<const int> values);
    // The offset of the most recently staged input when it holds exactly `values` (every layer of
    // a pass attends over the same batch), else nullopt.
    std::optional<std::size_t> find_last(std::span<const int> values) const;
    std::span<const int> staged() const { return staged_; }

    // A device-to-host copy that a replayed pass performs after the graph has run.
    struct HostCopy {
        const void* device = nullptr;
        void* host = nullptr;
        std::size_t bytes = 0;
    };
    void defer_copy(const HostCopy& copy);
    std::span<const HostCopy> host_copies() const { return host_copies_; }

  private:
    template <typename Value>
    void mix_value(const Value& value) {
        static_assert(std::is_trivially_copyable_v<Value>);
        unsigned char bytes[sizeof(Value)];
        std::memcpy(bytes, &value, sizeof(Value));
        mix(bytes, sizeof(Value));
    }
    void mix(const unsigned char* bytes, std::size_t count);

    std::uint64_t signature_ = kEmptySignature;
    std::vector<unsigned char> record_;
    std::vector<int> staged_;
    std::size_t last_offset_ = 0, last_count_ = 0;
    bool has_last_ = false;
    std::vector<HostCopy> host_copies_;
    static constexpr std::uint64_t kEmptySignature = 14695981039346656037ull;  // FNV-1a basis
};

}  // namespace llmserve::backend::cuda
