add_executable(bench_kernels ${CMAKE_CURRENT_SOURCE_DIR}/kernels_bench.cpp)
# OpenBLAS only as the yardstick for our GEMM (the backend itself does not use it).
target_link_libraries(bench_kernels PRIVATE llmserve_backend benchmark::benchmark_main PkgConfig::OPENBLAS)
