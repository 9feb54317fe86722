// One step of a Langevin chunk on one core: the forward pass and input gradient of 8 images through the seed's net
// (CpuNet, the weights held as langevin() holds them), what each thread of the CPU backend repeats 100 times a
// training step. Prints the minimum and the median over the repetitions, and GFLOP/s at the minimum counting the
// convolutions' multiply-adds in full (padding taps included, as bench/README.md's "% of peak" does). The minimum is
// the figure to compare between builds on a shared host (another tenant slows the median); compare two builds in
// alternating runs. Not part of the CMake build; build against a release build's engine library (one line):
//   g++ -std=gnu++20 -O2 -march=native -I. bench/chain_bench.cpp build/libebm_engine.a -fopenmp -lopenblas -o /tmp/cb
// and run `OMP_NUM_THREADS=1 /tmp/cb [REPS=400] [IMAGES=8]`.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "engine/cpu/cpu_net.hpp"
#include "engine/net.hpp"

namespace {
// argv[i] as a whole decimal integer in [lo, hi], or `fallback` where it is not given; -1 where it is not one.
long arg_in(int argc, char** argv, int i, long fallback, long lo, long hi) {
  if (argc <= i) return fallback;
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(argv[i], &end, 10);
  return errno == 0 && end != argv[i] && *end == '\0' && v >= lo && v <= hi ? v : -1;
}
}  // namespace

int main(int argc, char** argv) {
  const long reps = arg_in(argc, argv, 1, 400, 1, 1000000), n = arg_in(argc, argv, 2, 8, 1, 4096);
  if (argc > 3 || reps < 0 || n < 0) {
    std::fprintf(stderr, "usage: chain_bench [REPS in 1..1000000] [IMAGES in 1..4096]\n");
    return 2;
  }
  const ebm::NetSpec net = ebm::NetSpec::make({16, 32, 64, 64}, 3, 2, 32);
  const std::vector<float> params = ebm::init_params(net, 1);
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(-1, 1);
  const size_t rows = static_cast<size_t>(n);
  std::vector<float> x(rows * size_t(net.image_size())), f(rows), ones(rows, 1.0f), dx(x.size());
  for (float& v : x) v = u(gen);
  ebm::CpuNet cpu_net(net);
  cpu_net.hold_weights(params.data());
  std::vector<double> ms;
  for (long r = 0; r < reps + 20; ++r) {  // 20 warm-up passes
    const auto t0 = std::chrono::steady_clock::now();
    cpu_net.forward(params.data(), x.data(), int(n), f.data());
    cpu_net.backward(params.data(), ones.data(), dx.data(), nullptr);
    if (r >= 20) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  double flop = 0;  // forward and input gradient of every layer (the first one's is the image's: dx): 2 × 2 × MACs
  for (const ebm::ConvShape& s : net.convs) flop += 4.0 * s.hout * s.wout * s.cout * s.cin * s.k * s.k * n;
  std::printf("{\"images\":%ld,\"reps\":%ld,\"ms_min\":%.4f,\"ms_median\":%.4f,\"gflops_at_min\":%.1f,\"dx_5\":%.6g}\n", n,
              reps, ms.front(), ms[ms.size() / 2], flop / ms.front() / 1e6, double(dx[5]));
}
