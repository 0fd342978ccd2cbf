add_executable(bench_chat_template ${CMAKE_CURRENT_SOURCE_DIR}/chat_template_bench.cpp)
target_link_libraries(bench_chat_template PRIVATE llmserve_chat benchmark::benchmark_main)
target_compile_definitions(bench_chat_template PRIVATE LLMSERVE_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
