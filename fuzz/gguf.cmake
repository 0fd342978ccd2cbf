llmserve_add_fuzzer(gguf SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/gguf_fuzz.cpp LIBS llmserve_io)
