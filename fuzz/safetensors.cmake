llmserve_add_fuzzer(safetensors SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/safetensors_fuzz.cpp
                    LIBS llmserve_io)
