add_executable(bench_tokenizer ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_bench.cpp)
target_link_libraries(bench_tokenizer PRIVATE llmserve_tokenizer benchmark::benchmark_main)
target_compile_definitions(bench_tokenizer PRIVATE LLMSERVE_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
