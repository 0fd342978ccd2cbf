# Included by src/model/CMakeLists.txt: the model configuration parser on its own, so that the
# engine, server and tests can read configs without the model's kernels.
add_library(llmserve_model_config ${CMAKE_CURRENT_LIST_DIR}/config.cpp
            ${CMAKE_CURRENT_LIST_DIR}/families.cpp)
target_link_libraries(llmserve_model_config PUBLIC llmserve_common
                      PRIVATE llmserve_io nlohmann_json::nlohmann_json)
