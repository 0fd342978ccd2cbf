llmserve_add_fuzzer(tokenizer_json SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_json_fuzz.cpp
                    LIBS llmserve_tokenizer)
