#include "backend/cpu/worker_pool.h"

#include <algorithm>
#include <utility>

#include "common/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace llmserve::backend::cpu {
namespace {

// How long an idle thread polls before sleeping (or, for the caller, yielding): long enough to
// bridge the serial work between the parallel regions of one forward pass (tens of
// microseconds), short enough not to burn a core while the engine waits for requests.
constexpr int kSpinIterations = 20000;
constexpr std::uint32_t kClosed = 0xffffffffu;

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
}

template <typename Done>
void spin_until(Done done) {
    for (int spin = 0; !done(); ++spin) {
        if (spin < kSpinIterations) {
            cpu_relax();
        } else {
            std::this_thread::yield();
        }
    }
}

}  // namespace

WorkerPool::WorkerPool(int threads) {
    if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

WorkerPool::~WorkerPool() {
    stopping_.store(true);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    for (auto& worker : workers_) worker.join();
}

// Claims and runs chunks of job `generation` until none is left.
void WorkerPool::work_on_chunks(std::uint32_t generation, int worker) {
    std::uint64_t state = claim_.load(std::memory_order_acquire);
    while (true) {
        if (state >> 32 != generation) return;
        const auto begin = static_cast<std::uint32_t>(state);
        if (begin >= count_) return;  // also when closed
        if (!claim_.compare_exchange_weak(state, state + grain_, std::memory_order_acq_rel))
            continue;  // `state` now holds the current value
        const std::uint32_t end = std::min(count_, begin + grain_);
        try {
            fn_(context_, worker, begin, end);
        } catch (...) {
            std::lock_guard lock(error_mutex_);
            if (!error_) error_ = std::current_exception();
        }
        done_.fetch_add(end - begin, std::memory_order_acq_rel);
        state = claim_.load(std::memory_order_acquire);
    }
}

void WorkerPool::worker_loop(int worker) {
    std::uint32_t seen = 0;
    while (true) {
        std::uint32_t current = generation_.load(std::memory_order_acquire);
        for (int spin = 0; current == seen && spin < kSpinIterations; ++spin) {
            cpu_relax();
            current = generation_.load(std::memory_order_acquire);
        }
        if (current == seen) {
            generation_.wait(seen, std::memory_order_acquire);
            current = generation_.load(std::memory_order_acquire);
        }
        seen = current;
        if (stopping_.load()) return;
        // Enter, then check the job is still open: the caller closes a job before waiting for
        // entered_ to drop to zero, so (both sequentially consistent) either it waits for us or
        // we see the job closed and touch nothing.
        entered_.fetch_add(1);
        const std::uint64_t state = claim_.load();
        if (state >> 32 == seen && static_cast<std::uint32_t>(state) != kClosed)
            work_on_chunks(seen, worker);
        entered_.fetch_sub(1, std::memory_order_release);
    }
}

void WorkerPool::wait_for_workers_to_leave() const {
    spin_until([this] { return entered_.load(std::memory_order_acquire) == 0; });
}

void WorkerPool::run(std::size_t count, std::size_t grain, ChunkFn fn, void* context) {
    if (count == 0) return;
    if (count >= (std::size_t{1} << 31))
        fail(ErrorCode::kInternal, "WorkerPool: {} items exceed one job", count);
    grain = std::clamp<std::size_t>(grain, 1, count);
    if (workers_.empty() || count <= grain) {
        for (std::size_t begin = 0; begin < count; begin += grain)
            fn(context, 0, begin, std::min(count, begin + grain));
        return;
    }
    wait_for_workers_to_leave();  // stragglers of the previous job may still read its fields
    fn_ = fn;
    context_ = context;
    count_ = static_cast<std::uint32_t>(count);
    grain_ = static_cast<std::uint32_t>(grain);
    done_.store(0, std::memory_order_relaxed);
    const std::uint32_t generation = ++jobs_;
    claim_.store(static_cast<std::uint64_t>(generation) << 32);
    generation_.store(generation, std::memory_order_release);
    generation_.notify_all();
    work_on_chunks(generation, 0);
    spin_until([&] { return done_.load(std::memory_order_acquire) == count_; });
    claim_.store(static_cast<std::uint64_t>(generation) << 32 | kClosed);
    std::exception_ptr error;
    {
        std::lock_guard lock(error_mutex_);
        error = std::exchange(error_, nullptr);
    }
    if (error) std::rethrow_exception(error);
}

}  // namespace llmserve::backend::cpu
