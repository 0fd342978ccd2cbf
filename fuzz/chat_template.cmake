llmserve_add_fuzzer(chat_template SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/chat_template_fuzz.cpp
                    LIBS llmserve_chat)
