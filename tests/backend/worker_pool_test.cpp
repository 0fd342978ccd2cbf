#include "backend/cpu/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

namespace llmserve::backend::cpu {
namespace {

TEST(WorkerPool, EveryIndexRunsExactlyOnce) {
    for (int threads : {1, 2, 4}) {
        WorkerPool pool(threads);
        EXPECT_EQ(pool.size(), threads);
        for (std::size_t count : {1u, 2u, 7u, 64u, 1000u, 4097u})
            for (std::size_t grain : {1u, 3u, 64u, 10000u}) {
                std::vector<std::atomic<int>> hits(count);
                pool.parallel_for(count, grain, [&](std::size_t begin, std::size_t end) {
                    ASSERT_LE(end - begin, grain);
                    for (std::size_t i = begin; i < end; ++i) hits[i].fetch_add(1);
                });
                for (std::size_t i = 0; i < count; ++i)
                    ASSERT_EQ(hits[i].load(), 1)
                        << "index " << i << " of " << count << ", grain " << grain;
            }
    }
}

// A body that takes the worker index gets one in [0, size()), and never two chunks on one index
// at once: what per-thread scratch relies on.
TEST(WorkerPool, WorkerIndexIsInRangeAndNeverShared) {
    for (int threads : {1, 2, 4}) {
        WorkerPool pool(threads);
        std::vector<std::atomic<int>> busy(threads);
        std::vector<std::atomic<int>> chunks_run(threads);
        std::atomic<int> overlaps{0}, out_of_range{0};
        for (int job = 0; job < 200; ++job)
            pool.parallel_for(64, 1, [&](int worker, std::size_t, std::size_t) {
                if (worker < 0 || worker >= threads) {
                    out_of_range.fetch_add(1);
                    return;
                }
                if (busy[worker].exchange(1) != 0) overlaps.fetch_add(1);
                chunks_run[worker].fetch_add(1);
                std::this_thread::yield();  // give another thread the chance to collide
                busy[worker].store(0);
            });
        EXPECT_EQ(out_of_range.load(), 0) << threads << " threads";
        EXPECT_EQ(overlaps.load(), 0) << threads << " threads";
        int total = 0;
        for (auto& count : chunks_run) total += count.load();
        EXPECT_EQ(total, 200 * 64);
    }
}

// Thousands of short jobs back to back, as a decode step issues them: none is lost or mixed up
// with the next (each writes its own job number).
TEST(WorkerPool, BackToBackJobsStaySeparate) {
    WorkerPool pool(3);
    std::vector<int> owner(256);
    for (int job = 0; job < 5000; ++job) {
        pool.parallel_for(owner.size(), 8, [&](std::size_t begin, std::size_t end) {
            for (std::size_t i = begin; i < end; ++i) owner[i] = job;
        });
        for (int value : owner) ASSERT_EQ(value, job);
    }
}

TEST(WorkerPool, RethrowsTheFirstExceptionAndStaysUsable) {
    WorkerPool pool(2);
    EXPECT_THROW(pool.parallel_for(100, 1,
                                   [](std::size_t begin, std::size_t) {
                                       if (begin == 42) throw std::runtime_error("chunk 42");
                                   }),
                 std::runtime_error);
    std::atomic<int> total{0};
    pool.parallel_for(100, 1, [&](std::size_t begin, std::size_t end) {
        total += static_cast<int>(end - begin);
    });
    EXPECT_EQ(total.load(), 100);
    pool.parallel_for(0, 1,
                      [](std::size_t, std::size_t) { FAIL() << "called for an empty range"; });
}

}  // namespace
}  // namespace llmserve::backend::cpu
