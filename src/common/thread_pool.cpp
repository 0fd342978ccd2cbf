#include "common/thread_pool.h"

#include <algorithm>
#include <utility>

namespace llmserve {

ThreadPool::ThreadPool(int threads) {
    if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    work_ready_.notify_all();
    for (auto& worker : workers_) worker.join();
}

// Takes chunks until none are left; called by workers and by the submitting thread.
void ThreadPool::run_chunks() {
    std::unique_lock lock(mutex_);
    while (body_ != nullptr && next_chunk_ < chunks_total_) {
        const std::size_t chunk = next_chunk_++;
        const auto* body = body_;
        lock.unlock();
        const std::size_t begin = chunk * chunk_;
        const std::size_t end = std::min(count_, begin + chunk_);
        std::exception_ptr error;
        try {
            (*body)(begin, end);
        } catch (...) {
            error = std::current_exception();
        }
        lock.lock();
        if (error && !error_) error_ = error;
        if (++chunks_finished_ == chunks_total_) work_done_.notify_all();
    }
}

void ThreadPool::worker_loop() {
    std::size_t seen_generation = 0;
    while (true) {
        {
            std::unique_lock lock(mutex_);
            work_ready_.wait(lock, [&] { return stopping_ || generation_ != seen_generation; });
            if (stopping_) return;
            seen_generation = generation_;
        }
        run_chunks();
    }
}

void ThreadPool::parallel_for(std::size_t count, std::size_t min_chunk,
                              const std::function<void(std::size_t, std::size_t)>& body) {
    if (count == 0) return;
    const std::size_t per_thread = (count + size() - 1) / size();
    const std::size_t chunk = std::max<std::size_t>({per_thread, min_chunk, 1});
    if (workers_.empty() || chunk >= count) {
        body(0, count);
        return;
    }
    {
        std::lock_guard lock(mutex_);
        body_ = &body;
        count_ = count;
        chunk_ = chunk;
        next_chunk_ = 0;
        chunks_total_ = (count + chunk - 1) / chunk;
        chunks_finished_ = 0;
        error_ = nullptr;
        ++generation_;
    }
    work_ready_.notify_all();
    run_chunks();
    std::unique_lock lock(mutex_);
    work_done_.wait(lock, [&] { return chunks_finished_ == chunks_total_; });
    body_ = nullptr;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

}  // namespace llmserve
