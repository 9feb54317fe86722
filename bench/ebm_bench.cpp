// ebm_bench: times the seed's Langevin step and training step on one backend; one JSON line out.
//   ebm_bench [--backend cpu|cuda] [--batch 128] [--langevin-steps 100] [--iters 10] [--warmup 2]
// Warm-up iterations first; then the median over --iters (steady clock; the GPU backend's
// drain_metrics() synchronises, so each timed train step includes its completion).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <vector>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "host/backend_factory.hpp"
#include "host/cli.hpp"
#include "nlohmann/json.hpp"

using namespace ebm;
using Clock = std::chrono::steady_clock;

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

static int run(int argc, char** argv) {
  Args args(argc, argv, {"--backend", "--batch", "--langevin-steps", "--iters", "--warmup", "--channels"}, {"--help"});
  if (args.has("--help")) {
    std::cout << "usage: ebm_bench [--backend cpu|cuda|auto] [--batch 128] [--langevin-steps 100] [--iters 10] "
                 "[--warmup 2]\n";
    return 0;
  }
  EngineOptions opt;
  opt.net = NetSpec::make({16, 32, 64, 64}, 3, 2, 32);
  opt.batch_size = int(args.integer("--batch", 128, 1, 65536));
  opt.sampler.steps = int(args.integer("--langevin-steps", 100, 1, 100000));
  opt.buffer_initial = opt.batch_size;
  const int iters = int(args.integer("--iters", 10, 1, 100000));
  const int warmup = int(args.integer("--warmup", 2, 0, 100000));
  auto be = make_backend(args.str("--backend", "cpu"), opt);

  // A synthetic training set: timing does not depend on pixel values.
  Tensor train({int64_t(opt.batch_size) * (iters + warmup), 1, 32, 32});
  Rng(1, RngStream::kInit).uniform(train.ptr(), train.numel(), -1, 1);
  be->set_train_data(train);
  be->begin_epoch(0);

  std::vector<double> step_ms, langevin_ms;
  for (int i = 0; i < warmup + iters; ++i) {
    const auto t0 = Clock::now();
    be->train_step(i);
    be->drain_metrics();
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (i >= warmup) step_ms.push_back(ms);
  }
  Tensor x({opt.batch_size, 1, 32, 32});
  const int k = std::min(opt.sampler.steps, 20);
  SamplerParams sp = opt.sampler;
  sp.steps = k;
  for (int i = 0; i < warmup + iters; ++i) {
    Rng(2 + i, RngStream::kInit).uniform(x.ptr(), x.numel(), -1, 1);
    const auto t0 = Clock::now();
    be->sample(x, sp, 7 + i);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (i >= warmup) langevin_ms.push_back(ms / k);
  }
  nlohmann::json out = {{"backend", be->describe()}, {"batch", opt.batch_size}, {"langevin_steps", opt.sampler.steps},
                        {"iters", iters}, {"ms_per_train_step", median(step_ms)},
                        {"ms_per_langevin_step", median(langevin_ms)},
                        {"epoch_s_mnist", median(step_ms) * 469 / 1000.0}};
  std::cout << out.dump() << std::endl;
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "ebm_bench: " << e.what() << "\n";
    return 1;
  }
}
