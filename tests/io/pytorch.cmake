# pytorch_model.bin reader tests (include()d from this folder's CMakeLists.txt).
llmserve_add_test(pytorch_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/pytorch_checkpoint_test.cpp
  LIBS llmserve_pytorch nlohmann_json::nlohmann_json)
