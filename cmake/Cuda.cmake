# CUDA backend detection. Included from the top-level CMakeLists.txt after add_subdirectory(src).
#
# LLMSERVE_CUDA = AUTO (default): build the CUDA backend when nvcc is found; ON: require it; OFF: never.
# Sanitizer and fuzzer builds never build it (ASan and the CUDA runtime do not mix well).
# Defines the library llmserve_device (device selection) in every configuration; when the backend is built it
# sees LLMSERVE_WITH_CUDA=1 and opens the module libllmserve_cuda.so at run time (backend/cuda_module.h). Sets
# LLMSERVE_WITH_CUDA (ON/OFF) for tests/backend_cuda.
set(LLMSERVE_CUDA AUTO CACHE STRING "Build the CUDA backend: AUTO, ON or OFF")
set_property(CACHE LLMSERVE_CUDA PROPERTY STRINGS AUTO ON OFF)
string(TOUPPER "${LLMSERVE_CUDA}" _llmserve_cuda_mode)
if(NOT _llmserve_cuda_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "LLMSERVE_CUDA must be AUTO, ON or OFF; got '${LLMSERVE_CUDA}'")
endif()

set(LLMSERVE_WITH_CUDA OFF)
if(_llmserve_cuda_mode STREQUAL "OFF")
  message(STATUS "CUDA backend: off (LLMSERVE_CUDA=OFF)")
elseif(LLMSERVE_SANITIZE OR LLMSERVE_FUZZ)
  message(STATUS "CUDA backend: skipped in sanitizer/fuzzer builds")
else()
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "80;90")  # A100, H100/H200
    endif()
    enable_language(CUDA)
    # CMake before 3.26 does not know nvcc's C++20 flag, and the backend (like every target) is C++20.
    if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_COMPILE_FEATURES cuda_std_20)
      list(APPEND CMAKE_CUDA_COMPILE_FEATURES cuda_std_20)
    endif()
    find_package(CUDAToolkit REQUIRED)
    set(LLMSERVE_WITH_CUDA ON)
    message(STATUS "CUDA backend: on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
                   "architectures ${CMAKE_CUDA_ARCHITECTURES})")
  elseif(_llmserve_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "LLMSERVE_CUDA=ON but no CUDA compiler was found: install the CUDA "
                        "toolkit or set CMAKE_CUDA_COMPILER to nvcc")
  else()
    message(STATUS "CUDA backend: off (no nvcc found)")
  endif()
endif()

if(LLMSERVE_WITH_CUDA)
  add_subdirectory(${CMAKE_SOURCE_DIR}/src/backend/cuda ${CMAKE_BINARY_DIR}/src/backend/cuda)
  # libllmserve_cuda.so beside the binary, opened by llmserve_device only when DEVICE asks for or finds a GPU, so
  # that a CPU-only process never maps the CUDA runtime and cuBLAS. It carries its own copy of the backend's
  # static libraries, hence position-independent code for them.
  foreach(_llmserve_pic_target llmserve_backend_cuda llmserve_backend llmserve_io llmserve_common
                               llmserve_kernels_scalar llmserve_kernels_avx2 llmserve_kernels_avx512)
    if(TARGET ${_llmserve_pic_target})
      set_target_properties(${_llmserve_pic_target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    endif()
  endforeach()
  add_library(llmserve_cuda_module MODULE ${CMAKE_SOURCE_DIR}/src/backend/cuda/module.cpp)
  target_link_libraries(llmserve_cuda_module PRIVATE llmserve_backend_cuda -Wl,--exclude-libs,ALL)
  target_compile_definitions(llmserve_cuda_module PRIVATE LLMSERVE_VERSION="${PROJECT_VERSION}")
  set_target_properties(llmserve_cuda_module PROPERTIES OUTPUT_NAME llmserve_cuda
                        LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR} CXX_VISIBILITY_PRESET hidden)
endif()

add_library(llmserve_device ${CMAKE_SOURCE_DIR}/src/backend/device.cpp)
target_link_libraries(llmserve_device PUBLIC llmserve_backend llmserve_common PRIVATE ${CMAKE_DL_LIBS})
target_compile_definitions(llmserve_device PRIVATE LLMSERVE_VERSION="${PROJECT_VERSION}"
                           LLMSERVE_WITH_CUDA=$<BOOL:${LLMSERVE_WITH_CUDA}>)
if(LLMSERVE_WITH_CUDA)
  add_dependencies(llmserve_device llmserve_cuda_module)
endif()
