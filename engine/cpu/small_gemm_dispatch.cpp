// small_sgemm_nn, small_conv_nn and the other vector kernels through the copy chosen for this CPU (engine/cpu/small_gemm.hpp):
// the build's own where it was compiled for the build machine (EBM_NATIVE), else the best of the x86-64 copies this
// CPU runs — what makes a portable build (Docker images, clusters: EBM_NATIVE=OFF) as fast as a native one in the
// kernels that dominate its time. EBM_CPU_ISA forces a copy.
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/cpu/small_gemm.hpp"
#include "engine/error.hpp"

// The copies CMake compiles (EBM_SMALL_GEMM_VARIANTS on x86-64 with GCC; EBM_SMALL_GEMM_HAS_<COPY> for each of those
// EBM_CPU_ISA_COPIES names).
#define EBM_DECLARE_KERNELS(ns)                                                                                   \
  namespace ebm::ns {                                                                                             \
  bool small_sgemm_nn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc); \
  bool small_conv_nn(int M, int N, int T, int cin, const int32_t* taps, const float* in, const float* B, int ldb, \
                     float* C, int ldc, const int32_t* rows, const SwishOut* swish);                              \
  bool small_conv_tapsum_nn(int M, int N, int T, int K, const int32_t* taps, const int32_t* rows, const float* in, \
                            const float* B, int ldb, float* C, int ldc, const float* sig,                    \
                            const float* z);                                                                    \
  bool conv_col2im_rows(int M, int N, int T, const int32_t* offs, const float* dcol, float* C, int ldc,        \
                        const float* sig, const float* z);                                                      \
  int widest_tile_columns();                                                                                    \
  void bias_swish_rows(float* z, float* sig, float* a, int64_t rows, int cols, const float* bias);               \
  void normal64(uint64_t seed, uint64_t stream, uint64_t first, float out[64]);                                 \
  void conv1_forward_image(const ConvShape& s, int b, const float* x, const float* wt, float* z,                \
                           const SwishOut* swish);                                                              \
  void conv1_backward_data_image(const ConvShape& s, int b, const float* dz, const float* wcol, float* dx);     \
  void col2im_image(const ConvShape& s, int b, const float* dcol, float* din);                                   \
  void swish_grad(float* dz, const float* da, const float* sg, const float* z, int64_t n);                      \
  }
EBM_DECLARE_KERNELS(isa_build)
#ifdef EBM_SMALL_GEMM_HAS_BASELINE
EBM_DECLARE_KERNELS(isa_baseline)
#endif
#ifdef EBM_SMALL_GEMM_HAS_AVX2
EBM_DECLARE_KERNELS(isa_avx2)
#endif
#ifdef EBM_SMALL_GEMM_HAS_AVX512
EBM_DECLARE_KERNELS(isa_avx512)
#endif

namespace ebm {
namespace {

#ifndef EBM_NATIVE_BUILD
#define EBM_NATIVE_BUILD 0
#endif

#define EBM_COPY(name, ns) \
  CpuVectorKernels {                                                                                \
    name, ns::widest_tile_columns(), ns::small_sgemm_nn, ns::small_conv_nn, ns::small_conv_tapsum_nn,           \
        ns::conv_col2im_rows, ns::bias_swish_rows,  ns::normal64, ns::conv1_forward_image,                     \
        ns::conv1_backward_data_image, ns::col2im_image, ns::swish_grad                                        \
  }

std::vector<CpuVectorKernels> variants_this_cpu_runs() {
  std::vector<CpuVectorKernels> v{EBM_COPY("build", isa_build)};
#ifdef EBM_SMALL_GEMM_VARIANTS
  __builtin_cpu_init();
#endif
#ifdef EBM_SMALL_GEMM_HAS_BASELINE
  v.push_back(EBM_COPY("baseline", isa_baseline));
#endif
#ifdef EBM_SMALL_GEMM_HAS_AVX2
  if (__builtin_cpu_supports("x86-64-v3")) v.push_back(EBM_COPY("avx2", isa_avx2));
#endif
#ifdef EBM_SMALL_GEMM_HAS_AVX512
  if (__builtin_cpu_supports("x86-64-v4")) v.push_back(EBM_COPY("avx512", isa_avx512));
#endif
  return v;
}

CpuVectorKernels choose() {
  const std::vector<CpuVectorKernels>& v = cpu_vector_variants();
  if (const char* want = std::getenv("EBM_CPU_ISA"); want && *want) {
    std::string names;
    for (const CpuVectorKernels& k : v) {
      if (k.isa == std::string(want)) return k;
      names += std::string(names.empty() ? "" : ", ") + k.isa;
    }
    user_fail("EBM_CPU_ISA=", want, ": not a kernel copy this build has and this CPU runs (", names, ")");
  }
  // A native build runs its own copy (compiled for this very machine); a portable one the widest this CPU runs.
  return EBM_NATIVE_BUILD ? v.front() : v.back();
}

}  // namespace

const std::vector<CpuVectorKernels>& cpu_vector_variants() {
  static const std::vector<CpuVectorKernels> v = variants_this_cpu_runs();
  return v;
}

const CpuVectorKernels& cpu_vector_kernels() {
  static const CpuVectorKernels k = choose();
  return k;
}

std::string cpu_vector_dispatched_isa() {
  const CpuVectorKernels& k = cpu_vector_kernels();
  return k.isa == std::string("build") ? std::string() : std::string(k.isa);
}

bool small_sgemm_nn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  return cpu_vector_kernels().sgemm_nn(M, N, K, A, lda, B, ldb, C, ldc);
}

bool small_conv_nn(int M, int N, int T, int cin, const int32_t* taps, const float* in, const float* B, int ldb,
                   float* C, int ldc, const int32_t* rows, const SwishOut* swish) {
  return cpu_vector_kernels().conv_nn(M, N, T, cin, taps, in, B, ldb, C, ldc, rows, swish);
}

bool small_conv_tapsum_nn(int M, int N, int T, int K, const int32_t* taps, const int32_t* rows, const float* in,
                          const float* B, int ldb, float* C, int ldc, const float* sig, const float* z) {
  return cpu_vector_kernels().conv_tapsum_nn(M, N, T, K, taps, rows, in, B, ldb, C, ldc, sig, z);
}

bool conv_col2im_rows(int M, int N, int T, const int32_t* offs, const float* dcol, float* C, int ldc,
                      const float* sig, const float* z) {
  return cpu_vector_kernels().col2im_rows(M, N, T, offs, dcol, C, ldc, sig, z);
}

}  // namespace ebm
