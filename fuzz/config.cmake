llmserve_add_fuzzer(config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/config_fuzz.cpp
                    LIBS llmserve_model_config)
