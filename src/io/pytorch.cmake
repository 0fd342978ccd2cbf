# pytorch_model.bin: a zip reader and a restricted unpickler (include()d from this folder's
# CMakeLists.txt, after llmserve_io is defined).
add_library(llmserve_pytorch
  ${CMAKE_CURRENT_LIST_DIR}/zip_reader.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pickle.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pytorch_checkpoint.cpp)
target_link_libraries(llmserve_pytorch PUBLIC llmserve_io llmserve_common
                      PRIVATE nlohmann_json::nlohmann_json)
