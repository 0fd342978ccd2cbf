// The CPU backend's threads. A decode step runs ~60 short parallel regions (a few microseconds
// each), so waking sleeping threads through a condition variable every time would cost more than
// the work: workers spin briefly on an atomic generation counter between regions and only then
// sleep (futex, through std::atomic::wait). The calling thread works too, so a pool of `threads`
// keeps exactly that many cores busy.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace llmserve::backend::cpu {

class WorkerPool {
  public:
    explicit WorkerPool(int threads);  // threads <= 0: one per hardware thread
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    int size() const { return static_cast<int>(workers_.size()) + 1; }

    // Calls body(begin, end) over chunks of at most `grain` items covering [0, count) (count
    // below 2^31), claimed dynamically by the caller and the workers. Returns when every chunk is
    // done, without waiting for workers that took no part (a descheduled thread delays nobody);
    // rethrows the first exception a chunk threw. One call at a time per pool.
    // A body taking (worker, begin, end) also learns which thread runs the chunk, in [0, size()):
    // 0 is the caller; no two chunks run on one worker index at once (per-thread scratch).
    template <typename Body>
    void parallel_for(std::size_t count, std::size_t grain, Body&& body) {
        auto trampoline = [](void* context, int worker, std::size_t begin, std::size_t end) {
            auto& chunk_body = *static_cast<std::remove_reference_t<Body>*>(context);
            if constexpr (std::is_invocable_v<decltype(chunk_body), int, std::size_t,
                                              std::size_t>) {
                chunk_body(worker, begin, end);
            } else {
                (void)worker;
                chunk_body(begin, end);
            }
        };
        run(count, grain, trampoline, &body);
    }

  private:
    using ChunkFn = void (*)(void* context, int worker, std::size_t begin, std::size_t end);
    void run(std::size_t count, std::size_t grain, ChunkFn fn, void* context);
    void work_on_chunks(std::uint32_t generation, int worker);
    void worker_loop(int worker);
    void wait_for_workers_to_leave() const;

    std::vector<std::thread> workers_;
    // The current job. Written by the caller only while no worker has entered (entered_ == 0)
    // and the job is closed; read by workers only between entering and leaving an open job.
    ChunkFn fn_ = nullptr;
    void* context_ = nullptr;
    std::uint32_t count_ = 0;
    std::uint32_t grain_ = 1;
    std::uint32_t jobs_ = 0;  // generation of the latest job (caller only)
    // generation << 32 | start of the next unclaimed chunk; kClosed once every chunk is done.
    alignas(64) std::atomic<std::uint64_t> claim_{0};
    alignas(64) std::atomic<std::uint32_t> done_{0};        // items finished in the current job
    alignas(64) std::atomic<std::uint32_t> generation_{0};  // what sleeping workers wait on
    alignas(64) std::atomic<int> entered_{0};               // workers inside an open job
    std::atomic<bool> stopping_{false};
    std::mutex error_mutex_;
    std::exception_ptr error_;
};

}  // namespace llmserve::backend::cpu
