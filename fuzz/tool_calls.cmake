# The tool-call parsers of chat replies (hermes, llama3_json), whole and streamed, on arbitrary
# bytes.
if(TARGET llmserve_server)
  llmserve_add_fuzzer(tool_calls SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/tool_calls_fuzz.cpp
                      LIBS llmserve_server)
endif()
