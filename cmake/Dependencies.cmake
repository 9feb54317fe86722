# Finds what the engine builds against and defines:
#   ebm::blas (interface; EBM_HAVE_CBLAS when OpenBLAS' cblas is present), OpenMP::OpenMP_CXX,
#   nlohmann_json::nlohmann_json, Eigen3::Eigen (EBM_EIGEN_FROM: its version and where), ZLIB::ZLIB and PNG::PNG (stub interfaces when zlib or libpng is absent;
#   EBM_HAVE_ZLIB / EBM_HAVE_PNG defined where present), GTest::gtest_main, and for CUDA: EBM_HAVE_CUDA,
#   EBM_CUDA_ARCH_LIST, ebm::cudnn (EBM_CUDNN_FROM: where it was found), CUDA::curand;
#   optional: EBM_HAVE_MPI (MPI::MPI_C), EBM_HAVE_NCCL (ebm::nccl), EBM_HAVE_TENSORBOARD (protoc and
#   protobuf::libprotobuf-lite; EBM_TENSORBOARD_WHY says what was missing).
# Machines without some -dev packages (the lent GPU machine) may point EBM_THIRD_PARTY at a folder
# holding copies of nlohmann/, eigen3/ and googletest/ (scripts/fetch_third_party.sh fills third_party/).

# ebm_wheel_dir(MODULE OUT): the folder of a pip wheel's namespace package (e.g. nvidia.cudnn), "" when
# Python or the module is absent. list(m.__path__)[0], not dirname(m.__file__): these packages have no
# __init__.py, so __file__ is None.
function(ebm_wheel_dir module out)
  set(_dir "")
  if(Python3_EXECUTABLE)
    execute_process(COMMAND ${Python3_EXECUTABLE} -c [=[
import importlib, sys
try:
    m = importlib.import_module(sys.argv[1])
except ImportError:
    sys.exit(0)
print(list(m.__path__)[0])
]=] ${module} OUTPUT_VARIABLE _dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  endif()
  set(${out} "${_dir}" PARENT_SCOPE)
endfunction()

# ebm_cudnn_from(): EBM_CUDNN_FROM, where cuDNN was found, in words for the configure summary (with its
# version), or, when it was not, everything that was looked at.
macro(ebm_cudnn_from)
  if(CUDNN_INCLUDE_DIR AND CUDNN_LIBRARY)
    set(_ver "")
    if(EXISTS "${CUDNN_INCLUDE_DIR}/cudnn_version.h")
      file(STRINGS "${CUDNN_INCLUDE_DIR}/cudnn_version.h" _v REGEX "^#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) +[0-9]+")
      string(REGEX REPLACE ".*CUDNN_MAJOR +([0-9]+).*CUDNN_MINOR +([0-9]+).*CUDNN_PATCHLEVEL +([0-9]+).*" "\\1.\\2.\\3" _ver "${_v}")
    endif()
    get_filename_component(_cudnn_lib_dir "${CUDNN_LIBRARY}" DIRECTORY)
    set(_cudnn_path "$ENV{CUDNN_PATH}")
    if(NOT _cudnn_path)
      set(_cudnn_path "${CUDNN_PATH}")
    endif()
    string(FIND "${CUDNN_LIBRARY}" "${EBM_WHEEL_nvidia_cudnn}/" _in_wheel)
    string(FIND "${CUDNN_LIBRARY}" "${_cudnn_path}/" _in_path)
    if(EBM_WHEEL_nvidia_cudnn AND _in_wheel EQUAL 0)
      set(EBM_CUDNN_FROM "${_ver} from the pip wheel (python module nvidia.cudnn: ${EBM_WHEEL_nvidia_cudnn})")
    elseif(_cudnn_path AND _in_path EQUAL 0)
      set(EBM_CUDNN_FROM "${_ver} from CUDNN_PATH=${_cudnn_path}")
    else()
      set(EBM_CUDNN_FROM "${_ver} from ${_cudnn_lib_dir}")
    endif()
  else()
    if(NOT Python3_EXECUTABLE)
      set(_py "no Python interpreter found to ask for the pip wheel (python module nvidia.cudnn)")
    elseif(EBM_WHEEL_nvidia_cudnn)
      set(_py "the pip wheel at ${EBM_WHEEL_nvidia_cudnn} (python module nvidia.cudnn)")
    else()
      set(_py "the pip wheel, but ${Python3_EXECUTABLE} cannot import nvidia.cudnn")
    endif()
    set(_h "not found")
    set(_l "not found")
    if(CUDNN_INCLUDE_DIR)
      set(_h "${CUDNN_INCLUDE_DIR}")
    endif()
    if(CUDNN_LIBRARY)
      set(_l "${CUDNN_LIBRARY}")
    endif()
    set(EBM_CUDNN_FROM "not found (cudnn.h: ${_h}; libcudnn.so or .so.9: ${_l}): looked in CUDNN_PATH='$ENV{CUDNN_PATH}${CUDNN_PATH}', the CUDA toolkit (${CUDAToolkit_LIBRARY_ROOT}), ${_py}")
  endif()
endmacro()

find_package(OpenMP REQUIRED COMPONENTS CXX)
include(${CMAKE_CURRENT_LIST_DIR}/NlohmannJson.cmake)  # also sets EBM_THIRD_PARTY

# Eigen (required, header-only): the symmetric eigendecompositions behind FID's matrix square root
# (host/eval/eval_metrics.cpp). The system package (libeigen3-dev), else the header copy in EBM_THIRD_PARTY/eigen3.
find_package(Eigen3 3.3 QUIET NO_MODULE)
if(TARGET Eigen3::Eigen)
  set(EBM_EIGEN_FROM "${Eigen3_VERSION}")
elseif(EXISTS "${EBM_THIRD_PARTY}/eigen3/Eigen/Core")
  add_library(Eigen3::Eigen INTERFACE IMPORTED)
  target_include_directories(Eigen3::Eigen INTERFACE "${EBM_THIRD_PARTY}/eigen3")
  file(STRINGS "${EBM_THIRD_PARTY}/eigen3/Eigen/src/Core/util/Macros.h" _v
       REGEX "^#define EIGEN_(WORLD|MAJOR|MINOR)_VERSION +[0-9]+")
  string(REGEX REPLACE ".*WORLD_VERSION +([0-9]+).*MAJOR_VERSION +([0-9]+).*MINOR_VERSION +([0-9]+).*"
         "\\1.\\2.\\3" _ver "${_v}")
  set(EBM_EIGEN_FROM "${_ver} from ${EBM_THIRD_PARTY}/eigen3")
else()
  message(FATAL_ERROR "Eigen 3.3 or later not found: run scripts/setup.sh (apt package libeigen3-dev)")
endif()

# zlib (optional): gzip IDX files. Without it raw IDX files read as ever, a gzip one is a one-line error
# naming it, and the training set's CRC-32 comes from host/io/crc32.cpp's table (the same values).
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

# Protocol Buffers (optional): TensorBoard event files (host/io/tensorboard.cpp, the schema in
# host/io/tensorboard_event.proto compiled by protoc). Both the compiler and the (lite) runtime library are needed;
# without either, ebm_train writes no tb/ folder and says so once when train.tensorboard is on.
set(EBM_HAVE_TENSORBOARD FALSE)
find_package(Protobuf QUIET)
if(Protobuf_FOUND AND Protobuf_PROTOC_EXECUTABLE AND TARGET protobuf::libprotobuf-lite)
  set(EBM_HAVE_TENSORBOARD TRUE)
  set(EBM_TENSORBOARD_WHY "")
elseif(NOT Protobuf_PROTOC_EXECUTABLE)
  set(EBM_TENSORBOARD_WHY "protoc not found (Debian: protobuf-compiler, libprotobuf-dev)")
else()
  set(EBM_TENSORBOARD_WHY "the protobuf library and headers not found (Debian: libprotobuf-dev)")
endif()

# BLAS for the CPU backend's convolutions (im2col + SGEMM). Without it a portable blocked GEMM is used.
add_library(ebm_blas INTERFACE)
add_library(ebm::blas ALIAS ebm_blas)
set(BLA_VENDOR OpenBLAS)
find_package(BLAS QUIET)
find_path(EBM_CBLAS_INCLUDE cblas.h PATH_SUFFIXES openblas openblas-pthread x86_64-linux-gnu/openblas-pthread
          HINTS /usr/include/x86_64-linux-gnu/openblas-pthread)
# OpenBLAS is loaded at the first GEMM (engine/cpu/gemm.cpp), by its soname, after OPENBLAS_NUM_THREADS=1: linked,
# its pthread build would start its own thread pool before main, each thread mapping a 128 MiB work buffer that
# nothing uses (the backend runs one-thread GEMMs inside OpenMP regions), and under ulimit -v retrying that map
# forever. The headers give the declarations; the library found here is what the soname resolves to at run time.
set(EBM_OPENBLAS_SONAME "libopenblas.so.0" CACHE STRING "OpenBLAS's soname, loaded at the first GEMM")
if(BLAS_FOUND AND EBM_CBLAS_INCLUDE)
  set(EBM_OPENBLAS_PATH "")  # the library found, tried before the soname (a conda or /opt prefix)
  foreach(lib ${BLAS_LIBRARIES})
    if(lib MATCHES "openblas" AND EXISTS "${lib}" AND NOT EBM_OPENBLAS_PATH)
      get_filename_component(EBM_OPENBLAS_PATH "${lib}" REALPATH)
    endif()
  endforeach()
  # dlopen's library (none where libc has it) as an imported target: CMakeLists.txt turns on
  # CMAKE_LINK_LIBRARIES_ONLY_TARGETS, which refuses a plain name
  add_library(ebm::dl INTERFACE IMPORTED)
  set_target_properties(ebm::dl PROPERTIES INTERFACE_LINK_LIBRARIES "${CMAKE_DL_LIBS}")
  target_link_libraries(ebm_blas INTERFACE ebm::dl)
  target_include_directories(ebm_blas INTERFACE ${EBM_CBLAS_INCLUDE})
  target_compile_definitions(ebm_blas INTERFACE EBM_HAVE_CBLAS=1 EBM_OPENBLAS_SONAME="${EBM_OPENBLAS_SONAME}"
                                                EBM_OPENBLAS_PATH="${EBM_OPENBLAS_PATH}")
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
    # Libraries from pip wheels (what a machine with PyTorch has): nvidia-cudnn-cu13 in nvidia/cudnn/,
    # nvidia-nccl-cu13 in nvidia/nccl/, the CUDA 13 wheels (cuRAND among them) in nvidia/cu13/, CUDA 12's in
    # nvidia/curand/. The wheels ship no __init__.py: namespace packages, whose __file__ is None, so the folder
    # is __path__[0] (DESIGN §7).
    find_package(Python3 QUIET COMPONENTS Interpreter)
    foreach(_module nvidia.cudnn nvidia.nccl nvidia.cu13 nvidia.curand)
      ebm_wheel_dir(${_module} _dir)
      string(REPLACE "." "_" _var "${_module}")
      set(EBM_WHEEL_${_var} "${_dir}")
    endforeach()

    # cuRAND: the toolkit's (CUDA::curand from FindCUDAToolkit), else a wheel's.
    set(EBM_CURAND_FROM "CUDA toolkit")
    if(NOT TARGET CUDA::curand)
      find_path(EBM_CURAND_INCLUDE_DIR curand.h HINTS ${EBM_WHEEL_nvidia_cu13} ${EBM_WHEEL_nvidia_curand}
                PATH_SUFFIXES include NO_DEFAULT_PATH)
      find_library(EBM_CURAND_LIBRARY NAMES curand libcurand.so.10 HINTS ${EBM_WHEEL_nvidia_cu13}
                   ${EBM_WHEEL_nvidia_curand} PATH_SUFFIXES lib NO_DEFAULT_PATH)
      if(EBM_CURAND_INCLUDE_DIR AND EBM_CURAND_LIBRARY)
        add_library(CUDA::curand SHARED IMPORTED)
        set_target_properties(CUDA::curand PROPERTIES IMPORTED_LOCATION "${EBM_CURAND_LIBRARY}"
                              INTERFACE_INCLUDE_DIRECTORIES "${EBM_CURAND_INCLUDE_DIR}")
        set(EBM_CURAND_FROM "pip wheel: ${EBM_CURAND_LIBRARY}")
      endif()
    endif()

    # cuDNN: CUDNN_PATH, the toolkit, or the pip wheel (as cudnn-frontend's cmake does). The wheel's lib/
    # holds only versioned names (libcudnn.so.9).
    set(_cudnn_hints $ENV{CUDNN_PATH} ${CUDNN_PATH} ${CUDAToolkit_LIBRARY_ROOT} ${CUDAToolkit_TARGET_DIR}
                     ${EBM_WHEEL_nvidia_cudnn})
    find_path(CUDNN_INCLUDE_DIR cudnn.h HINTS ${_cudnn_hints} ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
    find_library(CUDNN_LIBRARY NAMES cudnn libcudnn.so.9 HINTS ${_cudnn_hints} ${CUDAToolkit_LIBRARY_DIR}
                 PATH_SUFFIXES lib lib64)
    ebm_cudnn_from()
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
                ${EBM_WHEEL_nvidia_nccl} PATH_SUFFIXES include)
      find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS $ENV{NCCL_HOME} ${NCCL_HOME} ${CUDAToolkit_LIBRARY_DIR}
                   ${EBM_WHEEL_nvidia_nccl} PATH_SUFFIXES lib lib64)
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
