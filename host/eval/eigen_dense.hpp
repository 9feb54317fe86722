// Eigen's dense module (matrices, decompositions, eigensolvers) for the host code and its tests.
//
// Why a header of its own: GCC 12.1–12.2 warn about their own AVX-512 intrinsics (`__m512d __Y = __Y;` in
// avx512fintrin.h, "may be used uninitialized") wherever Eigen's vectorised GEMM is inlined with
// -march=native on an AVX-512 machine (GCC bug 105593, fixed in 12.3). The warning is in the compiler's
// header, not in Eigen or here, but -Werror builds stop on it; silenced around the include only, so our own
// code keeps -Wmaybe-uninitialized.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Dense>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
