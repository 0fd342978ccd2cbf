// A fixed pool of worker threads for data-parallel loops. The calling thread works too, so a pool
// of `threads` uses exactly that many cores. One parallel_for runs at a time per pool (the engine
// thread owns it).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace llmserve {

class ThreadPool {
  public:
    explicit ThreadPool(int threads);  // threads <= 0: one per hardware thread
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return static_cast<int>(workers_.size()) + 1; }

    // Calls body(begin, end) over disjoint chunks covering [0, count), each about count / size()
    // long but at least `min_chunk`. Returns when all chunks are done. Exceptions from body are
    // rethrown here (the first).
    void parallel_for(std::size_t count, std::size_t min_chunk,
                      const std::function<void(std::size_t, std::size_t)>& body);

  private:
    void worker_loop();
    void run_chunks();

    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable work_ready_;
    std::condition_variable work_done_;
    const std::function<void(std::size_t, std::size_t)>* body_ = nullptr;
    std::size_t count_ = 0;
    std::size_t chunk_ = 0;
    std::size_t next_chunk_ = 0;
    std::size_t chunks_total_ = 0;
    std::size_t chunks_finished_ = 0;
    std::size_t generation_ = 0;
    std::exception_ptr error_;
    bool stopping_ = false;
};

}  // namespace llmserve
