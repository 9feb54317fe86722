// Standalone microbenchmark: ebm::small_sgemm_nn vs single-threaded OpenBLAS cblas_sgemm on the CPU backend's
// convolution GEMM shapes. Not part of the CMake build; build by hand:
//   g++ -std=gnu++20 -O3 -march=native -I. -I/usr/include/x86_64-linux-gnu/openblas-pthread \
//       bench/small_gemm_bench.cpp engine/cpu/small_gemm.cpp engine/cpu/small_gemm_dispatch.cpp -lopenblas -o /tmp/sgb &&
//   OMP_NUM_THREADS=1 /tmp/sgb
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "engine/cpu/small_gemm.hpp"

extern "C" void openblas_set_num_threads(int);

namespace {
struct Shape { int M, N, K; const char* what; };

template <class F>
double median_ms(int reps, F&& f) {
  std::vector<double> t(reps);
  for (int i = 0; i < 3; ++i) f();
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t[i] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
  }
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return t[reps / 2];
}
}  // namespace

int main(int argc, char** argv) {
  openblas_set_num_threads(1);
  const int reps = argc > 1 ? std::atoi(argv[1]) : 200;
  const Shape shapes[] = {
      {4096, 32, 144, "fwd conv2"},  {1024, 64, 288, "fwd conv3"},  {256, 64, 576, "fwd conv4"},
      {4096, 144, 32, "bwd conv2"},  {1024, 288, 64, "bwd conv3"},  {256, 576, 64, "bwd conv4"},
      {16384, 16, 9, "fwd conv1"},
  };
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  std::printf("%-10s %6s %4s %4s | %9s %8s | %9s %8s | %6s %s\n", "shape", "M", "N", "K", "ours ms", "GFLOP/s",
              "blas ms", "GFLOP/s", "speedup", "maxdiff");
  for (const Shape& s : shapes) {
    std::vector<float> A((size_t)s.M * s.K), B((size_t)s.K * s.N), C1((size_t)s.M * s.N), C2(C1.size());
    for (float& x : A) x = u(rng);
    for (float& x : B) x = u(rng);
    const double t1 = median_ms(reps, [&] { ebm::small_sgemm_nn(s.M, s.N, s.K, A.data(), s.K, B.data(), s.N, C1.data(), s.N); });
    const double t2 = median_ms(reps, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.M, s.N, s.K, 1.0f, A.data(), s.K, B.data(), s.N, 0.0f,
                  C2.data(), s.N);
    });
    double md = 0;
    for (size_t i = 0; i < C1.size(); ++i) md = std::max(md, (double)std::fabs(C1[i] - C2[i]));
    const double gf = 2.0 * s.M * s.N * s.K * 1e-6;
    std::printf("%-10s %6d %4d %4d | %9.4f %8.1f | %9.4f %8.1f | %6.2fx %.2e\n", s.what, s.M, s.N, s.K, t1, gf / t1,
                t2, gf / t2, t2 / t1, md);
  }
}
