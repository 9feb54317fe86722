// Pictures of what a model learned (ebm_sample): Langevin chains from uniform noise or from given
// images, the sample grid labelled with each sample's energy, and the trajectory picture of a few
// chains from noise to digit. The tool's main() only parses flags and calls these.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/png_image.hpp"

namespace ebm {

// The backend settings a tool needs for a checkpoint's network (batch size, seed, sampler from its config).
EngineOptions tool_engine_options(const Model& model);
EngineOptions tool_engine_options(const Config& config, const NetSpec& net);

// The checkpoint's generation settings (DESIGN §5 `generate`), grad_clip from its `sampler`.
SamplerParams generate_params(const Config& config);

// n uniform-noise images in [-1,1] for `net`, from stream (seed, kInit) at offset 2^48 — far past
// anything parameter initialisation draws from that stream, so the two never share numbers.
Tensor uniform_start(int n, const NetSpec& net, uint64_t seed);

// n chain starts from a run's replay buffer (ebm_sample --init buffer), newest image first. Where the run kept a
// ring per class (b.classes not empty), chain i starts from the newest unused image of class y_i's ring: y_i =
// classes[i], or without classes the classes in turn (conditional_classes). Otherwise the newest n images of the
// whole buffer (a data-parallel run's: the last rank's shard first). `where` names the checkpoint in the UserError
// when a ring or the buffer holds too few images.
Tensor buffer_start(const ReplayBufferImages& b, int n, const std::vector<int32_t>& classes, int K,
                    const std::string& where);
// Up to n of the newest rows of a run's buffer, to measure it (the divergence guard's probe, TensorBoard's energy
// histogram): with a ring per class, the classes in turn, each ring's newest first, going round a ring that holds
// fewer than its share; `classes` gets each row's class. Without, the newest min(n, held) rows; `classes` empty.
Tensor newest_buffer_rows(const ReplayBufferImages& b, int64_t n, int K, std::vector<int32_t>& classes);

struct SampleRun {
  Tensor x;                       // [n,1,H,W] the final samples
  std::vector<float> energy;      // [n] E = −f of the final samples
  std::vector<Tensor> trajectory; // snapshots (every > 0 only): before step 1, then every `every` steps
  std::vector<int> snapshot_steps;
  std::vector<double> snapshot_mean_energy;  // mean E over all n chains at each snapshot
};

// Runs the chains from `start` (its images are the initial state): noise from (seed, kGenerate) inside
// the backend, so with p.noise == 0 the result does not depend on the seed at all. `classes` [n]: chain i on
// the class-conditional energy E(x, classes[i]) (a K-output model; Backend::sample).
SampleRun run_sample(Backend& backend, Tensor start, const SamplerParams& p, uint64_t seed, int every = 0,
                     const std::vector<int32_t>* classes = nullptr);

// The sample grid: near-square, each tile labelled "E=<energy>", tiles upscaled by `scale`.
Image sample_grid(const Tensor& x, const std::vector<float>& energy, int scale = 2);

// The sampler at work: one row per chain (the first `chains` of them), one column per snapshot,
// the step number above each column.
Image trajectory_image(const std::vector<Tensor>& snapshots, const std::vector<int>& steps, int chains = 8,
                       int scale = 2);

// Most snapshots a trajectory picture holds (wider pictures stop being readable).
constexpr int kMaxSnapshots = 64;

}  // namespace ebm
