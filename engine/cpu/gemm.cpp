#include "engine/cpu/gemm.hpp"

#include <vector>

#ifdef EBM_HAVE_CBLAS
#include <cblas.h>  // the declarations only: the library is loaded at the first GEMM
#include <dlfcn.h>

#include <cstdlib>
#include <string>

#include "engine/error.hpp"
#endif
#include "engine/openmp_guard.hpp"

namespace ebm {

#ifdef EBM_HAVE_CBLAS
namespace {

struct OpenBlas {
  decltype(&cblas_sgemm) sgemm = nullptr;
  decltype(&cblas_dgemm) dgemm = nullptr;
  decltype(&openblas_set_num_threads) set_num_threads = nullptr;
  char* (*corename)() = nullptr;  // openblas_get_corename: the kernels OpenBLAS chose for this CPU (optional)
};

// OpenBLAS, loaded once. The backend runs one-thread GEMMs inside its OpenMP regions, so OpenBLAS's own thread
// pool never works; yet its pthread build starts that pool when the library loads, each thread mapping its
// 128 MiB work buffer at once, and under an address-space limit (ulimit -v) a map that fails is retried forever
// (blas_memory_alloc), a hang that exit then waits on. Loaded with OPENBLAS_NUM_THREADS=1 (unless the user set it;
// the variable is removed again after, so child processes do not inherit it), it starts no pool. The library CMake
// found is tried first, then the soname. A process that loaded the same library already gets that copy back,
// with the pool it started.
const OpenBlas& openblas() {
  static const OpenBlas lib = [] {
    const bool set_here = std::getenv("OPENBLAS_NUM_THREADS") == nullptr;
    if (set_here) setenv("OPENBLAS_NUM_THREADS", "1", /*overwrite=*/1);
    void* h = nullptr;
    std::string why;
    for (const char* name : {EBM_OPENBLAS_PATH, EBM_OPENBLAS_SONAME}) {
      if (!*name) continue;
      if ((h = dlopen(name, RTLD_NOW | RTLD_LOCAL))) break;
      const char* e = dlerror();
      why += std::string(why.empty() ? "" : "; ") + (e ? e : name);
    }
    if (set_here) unsetenv("OPENBLAS_NUM_THREADS");
    if (!h) user_fail("cannot load OpenBLAS (", why, "; Debian: libopenblas0)");
    OpenBlas b;
    b.sgemm = reinterpret_cast<decltype(b.sgemm)>(dlsym(h, "cblas_sgemm"));
    b.dgemm = reinterpret_cast<decltype(b.dgemm)>(dlsym(h, "cblas_dgemm"));
    b.set_num_threads = reinterpret_cast<decltype(b.set_num_threads)>(dlsym(h, "openblas_set_num_threads"));
    b.corename = reinterpret_cast<decltype(b.corename)>(dlsym(h, "openblas_get_corename"));
    if (!b.sgemm || !b.dgemm || !b.set_num_threads)
      user_fail(EBM_OPENBLAS_SONAME, " lacks cblas_sgemm, cblas_dgemm or openblas_set_num_threads: not OpenBLAS");
    return b;
  }();
  return lib;
}

}  // namespace

void sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
           float beta, float* c, int ldc) {
  openblas().sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                   lda, b, ldb, beta, c, ldc);
}
void dgemm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b, int ldb,
           double beta, double* c, int ldc) {
  openblas().dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                   lda, b, ldb, beta, c, ldc);
}
const char* gemm_provider() {
  // Its kernels, chosen at load time for this CPU (Debian's DYNAMIC_ARCH build), decide the GEMMs' last bits.
  static const std::string name = [] {
    const char* core = openblas().corename ? openblas().corename() : nullptr;
    return core && *core ? std::string("OpenBLAS ") + core : std::string("OpenBLAS");
  }();
  return name.c_str();
}
void set_gemm_threads(int n) { openblas().set_num_threads(n); }
bool gemm_maps_work_buffers() { return true; }
#else
namespace {
// i-p-j order so the inner loop runs along contiguous rows of B and C and vectorises.
template <class T>
void gemm_loop(bool ta, bool tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb, T beta, T* c,
               int ldc) {
  openmp_region();
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
bool gemm_maps_work_buffers() { return false; }
#endif

}  // namespace ebm
