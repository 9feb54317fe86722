// The FP32 fused-multiply-add peak of this machine's cores, the ceiling bench/README.md's "% of peak" figures are
// measured against: each thread runs 8 independent chains of 16-float FMAs (a = a·b + c, enough chains to hide the FMA
// latency; registers only, no memory), best of 5 timings; 1 thread, then OMP_NUM_THREADS (all cores). Not part of
// the CMake build; build by hand:
//   g++ -O2 -march=native -fopenmp bench/fma_peak.cpp -o /tmp/fma_peak && /tmp/fma_peak
// (Note: 16-float vectors are one AVX-512 register; on an AVX2 machine GCC splits each into two.)
#include <omp.h>

#include <algorithm>
#include <cstdio>

typedef float v16 __attribute__((vector_size(64)));

__attribute__((noinline)) static float chains(long iters) {
  const v16 b = v16{} + 0.9999f, c = v16{} + 0.0001f;
  v16 a0 = v16{} + 0.1f, a1 = a0 + 0.1f, a2 = a1 + 0.1f, a3 = a2 + 0.1f, a4 = a3 + 0.1f, a5 = a4 + 0.1f,
      a6 = a5 + 0.1f, a7 = a6 + 0.1f;
  for (long k = 0; k < iters; ++k) {
    a0 = a0 * b + c, a1 = a1 * b + c, a2 = a2 * b + c, a3 = a3 * b + c;
    a4 = a4 * b + c, a5 = a5 * b + c, a6 = a6 * b + c, a7 = a7 * b + c;
  }
  const v16 s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
  return s[0];
}

static double gflops(int threads) {
  const long iters = 50'000'000;
  double best = 1e30;
  float sink = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += chains(iters);
    best = std::min(best, omp_get_wtime() - t0);
  }
  if (sink == 12345.0f) std::puts("");  // keeps the chains
  return 8.0 * 16 * 2 * iters * threads / best / 1e9;
}

int main() {
  const int all = omp_get_max_threads();
  std::printf("{\"fp32_fma_gflops_1_thread\":%.1f,\"fp32_fma_gflops_all\":%.1f,\"threads\":%d}\n", gflops(1),
              gflops(all), all);
}
