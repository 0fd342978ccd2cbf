# fuzz_pickle: parse_pytorch_checkpoint (zip reader + restricted unpickler) over arbitrary bytes.
llmserve_add_fuzzer(pickle SOURCES ${CMAKE_CURRENT_LIST_DIR}/pickle_fuzz.cpp LIBS llmserve_pytorch)
