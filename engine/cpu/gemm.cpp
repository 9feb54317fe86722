#include "engine/cpu/gemm.hpp"

#include <vector>

#ifdef EBM_HAVE_CBLAS
#include <cblas.h>
#endif

namespace ebm {

#ifdef EBM_HAVE_CBLAS
void sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
           float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda,
              b, ldb, beta, c, ldc);
}
void dgemm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b, int ldb,
           double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda,
              b, ldb, beta, c, ldc);
}
const char* gemm_provider() { return "OpenBLAS"; }
void set_gemm_threads(int n) { openblas_set_num_threads(n); }
#else
namespace {
// i-p-j order so the inner loop runs along contiguous rows of B and C and vectorises.
template <class T>
void gemm_loop(bool ta, bool tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb, T beta, T* c,
               int ldc) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < m; ++i) {
    T* ci = c + int64_t(i) * ldc;
    for (int j = 0; j < n; ++j) ci[j] = beta == T(0) ? T(0) : beta * ci[j];
    for (int p = 0; p < k; ++p) {
      const T av = alpha * (ta ? a[int64_t(p) * lda + i] : a[int64_t(i) * lda + p]);
      if (av == T(0)) continue;
      if (tb) {
        for (int j = 0; j < n; ++j) ci[j] += av * b[int64_t(j) * ldb + p];
      } else {
        const T* bp = b + int64_t(p) * ldb;
        for (int j = 0; j < n; ++j) ci[j] += av * bp[j];
      }
    }
  }
}
}  // namespace
void sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
           float beta, float* c, int ldc) {
  gemm_loop(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void dgemm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b, int ldb,
           double beta, double* c, int ldc) {
  gemm_loop(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
const char* gemm_provider() { return "portable loop (no BLAS found)"; }
void set_gemm_threads(int) {}
#endif

}  // namespace ebm
