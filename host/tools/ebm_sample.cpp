// ebm_sample: pictures of what a model learned — Langevin chains from uniform noise (or --init images)
// under a checkpoint's energy, a grid labelled with each sample's energy, and optionally the chains'
// trajectory from noise to digit. With --noise 0 and --init the result is deterministic.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <type_traits>

#include "engine/error.hpp"
#include "host/backend_factory.hpp"
#include "host/checkpoint.hpp"
#include "host/cli.hpp"
#include "host/npy.hpp"
#include "host/sampling.hpp"
#include "host/scoring.hpp"
#include "host/tool_main.hpp"

using namespace ebm;

namespace {

constexpr const char* kUsage =
    "usage: ebm_sample --checkpoint DIR [--n 16] [--steps N] [--step-size S] [--noise S] [--grad-clip G]\n"
    "                  [--seed N] [--init X.npy] [--out samples.png] [--npy out.npy]\n"
    "                  [--trajectory traj.png [--every K]] [--backend auto|cpu|cuda]\n"
    "Runs Langevin chains under the checkpoint's energy E = -f and writes a grid of the samples, each\n"
    "labelled with its energy. Defaults come from the checkpoint's config: n, steps, step size and noise\n"
    "from `generate`, grad clip from `sampler`, seed from `seed`. Chains start from uniform noise in [-1,1],\n"
    "or from the images of --init (.npy float32 in [-1,1] or uint8, or IDX; 28x28 images are padded as in\n"
    "training; --n then takes the first n, default all). --noise 0 with --init is deterministic.\n"
    "  --out PATH         the sample grid (default samples.png)\n"
    "  --npy PATH         the final samples as float32 [n,1,H,W]\n"
    "  --trajectory PATH  up to 8 chains (rows) every K steps (columns, step number above each)\n"
    "  --every K          snapshot period for --trajectory (default: steps/10, rounded up)\n"
    "  --backend B        auto (CUDA when a device is present), cpu or cuda (default auto)\n";

struct Flags {
  std::string checkpoint, init, out = "samples.png", npy, trajectory, backend = "auto";
  std::optional<long long> n, steps, seed, every;
  std::optional<double> step_size, noise, grad_clip;
};

template <class T>
std::optional<T> opt_value(const Args& a, const std::string& flag, T min, T max) {
  if (!a.has(flag)) return std::nullopt;
  if constexpr (std::is_integral_v<T>)
    return a.integer(flag, 0, min, max);
  else
    return a.number(flag, 0, min, max);
}

// Usage problems (unknown flags, bad values, a missing --checkpoint) throw UserError from here: exit 2.
Flags parse(int argc, char** argv, bool& help) {
  Args a(argc, argv,
         {"--checkpoint", "--n", "--steps", "--step-size", "--noise", "--grad-clip", "--seed", "--init", "--out",
          "--npy", "--trajectory", "--every", "--backend"},
         {"--help"});
  help = a.has("--help");
  Flags f;
  if (help) return f;
  if (!a.positional().empty()) user_fail("unexpected argument '", a.positional()[0], "' (see --help)");
  f.checkpoint = a.str("--checkpoint", "");
  if (f.checkpoint.empty()) user_fail("--checkpoint DIR is required (see --help)");
  f.init = a.str("--init", "");
  f.out = a.str("--out", f.out);
  f.npy = a.str("--npy", "");
  f.trajectory = a.str("--trajectory", "");
  f.backend = a.str("--backend", f.backend);
  if (f.backend != "auto" && f.backend != "cpu" && f.backend != "cuda")
    user_fail("option --backend expects auto, cpu or cuda, got \"", f.backend, "\"");
  f.n = opt_value<long long>(a, "--n", 1, 1 << 20);
  f.steps = opt_value<long long>(a, "--steps", 0, 10'000'000);
  f.seed = opt_value<long long>(a, "--seed", 0, (1LL << 62));
  f.every = opt_value<long long>(a, "--every", 1, 10'000'000);
  f.step_size = opt_value<double>(a, "--step-size", 0, 1e6);
  f.noise = opt_value<double>(a, "--noise", 0, 1e3);
  f.grad_clip = opt_value<double>(a, "--grad-clip", 0, 1e6);
  if (f.every && f.trajectory.empty()) user_fail("--every sets the --trajectory snapshot period: give --trajectory PATH too");
  return f;
}

int run(const Flags& f) {
  const auto t0 = std::chrono::steady_clock::now();
  const Model model = load_model(f.checkpoint);
  const Config& cfg = model.config;

  SamplerParams p = generate_params(cfg);
  if (f.steps) p.steps = int(*f.steps);
  if (f.step_size) p.step_size = float(*f.step_size);
  if (f.noise) p.noise = float(*f.noise);
  if (f.grad_clip) p.grad_clip = float(*f.grad_clip);
  const uint64_t seed = f.seed ? uint64_t(*f.seed) : cfg.seed;

  Tensor start;
  std::string from;
  if (!f.init.empty()) {
    start = load_images_for_net(f.init, model.net);
    const int64_t have = start.shape[0];
    if (f.n && *f.n > have) user_fail("--n ", *f.n, " but ", f.init, " holds ", have, " images");
    if (f.n) {
      start.shape[0] = *f.n;
      start.data.resize(size_t(Tensor::numel_of(start.shape)));
    }
    from = f.init;
  } else {
    start = uniform_start(int(f.n.value_or(cfg.generate.n)), model.net, seed);
    from = "uniform noise";
  }
  const int n = int(start.shape[0]);

  int every = 0;
  if (!f.trajectory.empty()) {
    every = int(f.every.value_or(std::max(1, (p.steps + 9) / 10)));
    const int snapshots = (p.steps + every - 1) / every + 1;
    if (snapshots > kMaxSnapshots)
      user_fail("--every ", every, " gives ", snapshots, " snapshots of ", p.steps, " steps; a trajectory picture holds at most ",
                kMaxSnapshots, " (use --every ", (p.steps + kMaxSnapshots - 2) / (kMaxSnapshots - 1), " or more)");
  }

  auto backend = make_backend(f.backend, tool_engine_options(model));
  backend->set_params(model.params);
  std::printf("backend: %s\n", backend->describe().c_str());
  std::printf("checkpoint: %s (%lld parameters, input %dx%d)\n", f.checkpoint.c_str(), (long long)model.net.num_params,
              model.net.in_h, model.net.in_w);
  std::printf("sampling %d chains x %d steps from %s: step size %g, noise %g, grad clip %g, seed %llu\n", n, p.steps,
              from.c_str(), double(p.step_size), double(p.noise), double(p.grad_clip), (unsigned long long)seed);
  std::fflush(stdout);

  const SampleRun r = run_sample(*backend, std::move(start), p, seed, every);
  const EnergyStats s = energy_stats(r.energy);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("energy (E = -f) of the samples: mean %.6g, min %.6g, max %.6g  (%.1f s)\n", s.mean, s.min, s.max, secs);
  if (!std::isfinite(s.mean)) std::printf("warning: non-finite energies: the checkpoint may have diverged\n");

  const Image grid = sample_grid(r.x, r.energy);
  write_png(f.out, grid);
  std::printf("wrote %s (%dx%d, %d samples)\n", f.out.c_str(), grid.width, grid.height, n);
  if (!f.npy.empty()) {
    write_npy(f.npy, r.x);
    std::printf("wrote %s %s float32\n", f.npy.c_str(), shape_str(r.x.shape).c_str());
  }
  if (!f.trajectory.empty()) {
    std::printf("trajectory, mean energy over the %d chains:", n);
    for (size_t k = 0; k < r.snapshot_steps.size(); ++k)
      std::printf("%s step %d: %.4g", k ? "," : "", r.snapshot_steps[k], r.snapshot_mean_energy[k]);
    std::printf("\n");
    const Image traj = trajectory_image(r.trajectory, r.snapshot_steps);
    write_png(f.trajectory, traj);
    std::printf("wrote %s (%dx%d: %d chains, a snapshot every %d steps)\n", f.trajectory.c_str(), traj.width,
                traj.height, std::min(n, 8), every);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ebm::tool_main("ebm_sample", kUsage, argc, argv, parse, run); }
