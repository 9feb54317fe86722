// Single-threaded register-blocked SGEMM for the CPU backend's convolution shapes (im2col · weights and
// dz · weights): C[M][N] = A[M][K] · B[K][N], row-major, beta = 0. Written with GCC vector extensions, so
// -march=native lowers it to AVX-512 where the CPU has it (narrower vectors elsewhere).
#pragma once
#include <cstdint>

namespace ebm {

// C[M][N] = A[M][K] · B[K][N] (beta = 0: C is overwritten). lda/ldb/ldc are row strides in floats.
// Each C element is the sum over k in increasing order (fused multiply-adds), so results are deterministic.
// Returns false (and does nothing) when the shape is not one it handles: it needs N % 16 == 0 with
// N in [16, 1024], M >= 1, K >= 1 and lda >= K, ldb >= N, ldc >= N. Callers run one call per thread.
bool small_sgemm_nn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc);

// The forward convolution as an implicit GEMM (no im2col matrix): C[M][N] = A·B where row r of A is the
// concatenation over taps t < T of in[taps[r·T + t]][0..cin) (a pixel row of the NHWC input; taps −1
// read zeros), and B is [T·cin][N] with row stride ldb. Same conditions on N as above; cin ≤ 1024.
bool small_conv_nn(int M, int N, int T, int cin, const int32_t* taps, const float* in, const float* B, int ldb,
                   float* C, int ldc);

}  // namespace ebm
