# Finds what the engine builds against and defines:
#   ebm::blas (interface; EBM_HAVE_CBLAS when OpenBLAS' cblas is present), OpenMP::OpenMP_CXX,
#   nlohmann_json::nlohmann_json, ZLIB::ZLIB and PNG::PNG (stub interfaces when zlib or libpng is absent;
#   EBM_HAVE_ZLIB / EBM_HAVE_PNG defined where present), GTest::gtest_main, and for CUDA: EBM_HAVE_CUDA,
#   EBM_CUDA_ARCH_LIST, ebm::cudnn, CUDA::curand; optional: EBM_HAVE_MPI (MPI::MPI_C), EBM_HAVE_NCCL (ebm::nccl).
# Machines without some -dev packages (the lent GPU machine) may point EBM_THIRD_PARTY at a folder
# holding copies of nlohmann/ and googletest/ (see bench/device_check.sh).
find_package(OpenMP REQUIRED COMPONENTS CXX)
include(${CMAKE_CURRENT_LIST_DIR}/NlohmannJson.cmake)  # also sets EBM_THIRD_PARTY

# zlib (optional): gzip IDX files. Without it raw IDX files read as ever, a gzip one is a one-line error
# naming it, and the training set's CRC-32 comes from host/crc32.cpp's table (the same values).
find_package(ZLIB QUIET)
if(ZLIB_FOUND)
  set_property(TARGET ZLIB::ZLIB APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS EBM_HAVE_ZLIB=1)
else()
  add_library(ZLIB::ZLIB INTERFACE IMPORTED)
endif()

# libpng (optional; FindPNG needs zlib too): without it ebm_train skips its pictures with one warning, and
# ebm_sample / ebm_score refuse a .png output only when one is named.
find_package(PNG QUIET)
if(NOT PNG_FOUND)
  add_library(PNG::PNG INTERFACE IMPORTED)
else()
  set_property(TARGET PNG::PNG APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS EBM_HAVE_PNG=1)
endif()

# BLAS for the CPU backend's convolutions (im2col + SGEMM). Without it a portable blocked GEMM is used.
add_library(ebm_blas INTERFACE)
add_library(ebm::blas ALIAS ebm_blas)
set(BLA_VENDOR OpenBLAS)
find_package(BLAS QUIET)
find_path(EBM_CBLAS_INCLUDE cblas.h PATH_SUFFIXES openblas openblas-pthread x86_64-linux-gnu/openblas-pthread
          HINTS /usr/include/x86_64-linux-gnu/openblas-pthread)
if(BLAS_FOUND AND EBM_CBLAS_INCLUDE)
  target_link_libraries(ebm_blas INTERFACE ${BLAS_LIBRARIES})
  target_include_directories(ebm_blas INTERFACE ${EBM_CBLAS_INCLUDE})
  target_compile_definitions(ebm_blas INTERFACE EBM_HAVE_CBLAS=1)
  set(EBM_BLAS_FOUND TRUE)
endif()

if(BUILD_TESTING OR NOT DEFINED BUILD_TESTING)
  find_package(GTest QUIET)
  if(NOT GTest_FOUND)
    foreach(dir "${EBM_THIRD_PARTY}/googletest" /usr/src/googletest)
      if(EXISTS "${dir}/CMakeLists.txt")
        set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
        add_subdirectory("${dir}" "${CMAKE_BINARY_DIR}/googletest" EXCLUDE_FROM_ALL)
        if(NOT TARGET GTest::gtest_main)  # GoogleTest 1.11 and later define it themselves
          add_library(GTest::gtest_main ALIAS gtest_main)
        endif()
        set(GTest_FOUND TRUE)
        break()
      endif()
    endforeach()
  endif()
  if(NOT GTest_FOUND)
    message(FATAL_ERROR "GoogleTest not found: run scripts/setup.sh (apt package libgtest-dev)")
  endif()
endif()

# --- MPI (optional): launches data-parallel runs and carries the CPU backend's collectives and NCCL's
# unique id. Without it ebm_train runs one process, and refuses a launch on several ranks with a message.
set(EBM_HAVE_MPI FALSE)
option(EBM_ENABLE_MPI "Build data-parallel training over MPI where an MPI library is found" ON)
if(EBM_ENABLE_MPI)
  find_package(MPI QUIET COMPONENTS C)
  if(MPI_C_FOUND)
    set(EBM_HAVE_MPI TRUE)
  endif()
endif()

# --- CUDA (optional) ---
set(EBM_HAVE_CUDA FALSE)
set(EBM_NVTX_ON FALSE)
if(EBM_ENABLE_CUDA)
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_ARCHITECTURES OFF)
    enable_language(CUDA)
    if(CMAKE_VERSION VERSION_LESS 3.26)  # CMake 3.25 knows no C++20 dialect flag for nvcc
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    find_package(CUDAToolkit)
  endif()
  if(CUDAToolkit_FOUND)
    # cuDNN: CUDNN_PATH, the toolkit, or the pip wheel nvidia-cudnn-cu13 (as cudnn-frontend's cmake does).
    set(_cudnn_hints $ENV{CUDNN_PATH} ${CUDNN_PATH} ${CUDAToolkit_LIBRARY_ROOT} ${CUDAToolkit_TARGET_DIR})
    find_package(Python3 QUIET COMPONENTS Interpreter)
    if(Python3_FOUND)
      execute_process(COMMAND ${Python3_EXECUTABLE} -c
        "import nvidia.cudnn,os;print(os.path.dirname(nvidia.cudnn.__file__))"
        OUTPUT_VARIABLE _pip_cudnn OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
      if(_pip_cudnn)
        list(APPEND _cudnn_hints ${_pip_cudnn})
      endif()
    endif()
    find_path(CUDNN_INCLUDE_DIR cudnn.h HINTS ${_cudnn_hints} ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
    find_library(CUDNN_LIBRARY NAMES cudnn libcudnn.so.9 HINTS ${_cudnn_hints} ${CUDAToolkit_LIBRARY_DIR}
                 PATH_SUFFIXES lib lib64)
    if(CUDNN_INCLUDE_DIR AND CUDNN_LIBRARY AND TARGET CUDA::curand)
      add_library(ebm::cudnn INTERFACE IMPORTED)
      target_include_directories(ebm::cudnn INTERFACE ${CUDNN_INCLUDE_DIR})
      target_link_libraries(ebm::cudnn INTERFACE ${CUDNN_LIBRARY})
      set(EBM_HAVE_CUDA TRUE)
      set(EBM_CUDA_ARCH_LIST "")
      list(LENGTH EBM_CUDA_ARCHITECTURES _n)
      set(_i 0)
      foreach(a ${EBM_CUDA_ARCHITECTURES})
        math(EXPR _i "${_i}+1")
        if(_i EQUAL _n)
          list(APPEND EBM_CUDA_ARCH_LIST "${a}-real" "${a}-virtual")
        else()
          list(APPEND EBM_CUDA_ARCH_LIST "${a}-real")
        endif()
      endforeach()
      if(EBM_ENABLE_NVTX AND TARGET CUDA::nvtx3)
        set(EBM_NVTX_ON TRUE)
      endif()
      # NCCL (the GPU gradient all-reduce of data-parallel runs): shipped with the CUDA toolkit here, or
      # NCCL_HOME / the pip wheel nvidia-nccl-cu13 elsewhere. Needs MPI too (rank 0 shares NCCL's unique id).
      find_path(NCCL_INCLUDE_DIR nccl.h HINTS $ENV{NCCL_HOME} ${NCCL_HOME} ${CUDAToolkit_INCLUDE_DIRS}
                PATH_SUFFIXES include)
      find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS $ENV{NCCL_HOME} ${NCCL_HOME} ${CUDAToolkit_LIBRARY_DIR}
                   PATH_SUFFIXES lib lib64)
      set(EBM_HAVE_NCCL FALSE)
      if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
        add_library(ebm::nccl INTERFACE IMPORTED)
        target_include_directories(ebm::nccl INTERFACE ${NCCL_INCLUDE_DIR})
        target_link_libraries(ebm::nccl INTERFACE ${NCCL_LIBRARY})
        set(EBM_HAVE_NCCL TRUE)
      endif()
    endif()
  endif()
endif()
