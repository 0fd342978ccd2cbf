llmserve_add_fuzzer(tokenizer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_fuzz.cpp
                    LIBS llmserve_tokenizer)
target_compile_definitions(fuzz_tokenizer PRIVATE LLMSERVE_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
