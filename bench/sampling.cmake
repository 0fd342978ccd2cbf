add_executable(bench_sampling ${CMAKE_CURRENT_SOURCE_DIR}/sampling_bench.cpp)
target_link_libraries(bench_sampling PRIVATE llmserve_sampling benchmark::benchmark_main)
