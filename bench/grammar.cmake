add_executable(bench_grammar ${CMAKE_CURRENT_SOURCE_DIR}/grammar_bench.cpp)
target_link_libraries(bench_grammar PRIVATE llmserve_engine benchmark::benchmark_main)
target_compile_definitions(bench_grammar PRIVATE LLMSERVE_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
