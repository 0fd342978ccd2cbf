# GBNF parser, JSON Schema compiler and regex compiler: each input compiles (and its grammar then
# runs a few bytes through the matcher) or throws llmserve::Error.
foreach(target gbnf json_schema regex)
  llmserve_add_fuzzer(${target} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/${target}_fuzz.cpp
                      LIBS llmserve_grammar)
endforeach()
