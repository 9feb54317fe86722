// Row-major SGEMM: C[M,N] = alpha·op(A)·op(B) + beta·C. OpenBLAS where found, else a portable loop.
#pragma once
#include <cstdint>

namespace ebm {

void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
           int ldb, float beta, float* c, int ldc);

void dgemm(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
           int ldb, double beta, double* c, int ldc);
inline void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
                 float beta, float* c, int ldc) { sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); }
inline void gemm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                 int ldb, double beta, double* c, int ldc) { dgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); }

const char* gemm_provider();
void set_gemm_threads(int n);  // OpenBLAS' own pool; a no-op for the portable loop
// Whether each thread calling gemm maps a work buffer of its own (OpenBLAS: kBlasWorkBuffer, engine/address_space.hpp).
bool gemm_maps_work_buffers();

}  // namespace ebm
