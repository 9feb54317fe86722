# Cross build for 64-bit ARM Linux (Neoverse, Graviton, GH200's Grace) with Debian's cross compiler
# (g++-aarch64-linux-gnu); the `aarch64` preset uses it, and scripts/aarch64_check.sh runs the result under
# qemu-user. Libraries are looked for only in the target's root (/usr/aarch64-linux-gnu: libstdc++, libgomp), so
# none of the build machine's x86-64 ones is linked: the optional ones (OpenBLAS, zlib, libpng, protobuf, MPI,
# Python) are simply not found, and the CPU backend uses its portable GEMM. Header-only packages (nlohmann/json,
# Eigen) and GoogleTest's sources (/usr/src/googletest, built here for the target) come from the build machine.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(EBM_AARCH64_SYSROOT /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH ${EBM_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)   # build tools run here
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)    # target libraries only
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)    # header-only packages are architecture-free
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)    # their CMake configs (nlohmann_json, Eigen3); GTest is disabled below
set(CMAKE_DISABLE_FIND_PACKAGE_GTest ON)       # the x86-64 libgtest's config would be found: build it from source
# Test discovery and ctest run the aarch64 binaries through qemu-user with the target's loader and libraries.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L ${EBM_AARCH64_SYSROOT})
