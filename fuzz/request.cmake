# Request-body parsing and validation of the HTTP API (/generate, /v1/completions, /tokenize,
# /detokenize, /v1/chat/completions) on arbitrary bytes.
if(TARGET llmserve_server)
  llmserve_add_fuzzer(request SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/request_fuzz.cpp LIBS llmserve_server)
endif()
