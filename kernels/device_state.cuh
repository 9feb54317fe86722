// What the CUDA backend keeps in device memory between steps besides tensors: random-stream offsets,
// the replay buffer's ring position, Adam's step count and the metrics ring's counter. Kernels read and
// advance these, so a captured CUDA graph replays with fresh numbers each time (a kernel argument would be
// baked in at capture). The host reads or writes the struct whole, only at sync points.
#pragma once
#include <cstdint>

#include "kernels/ebm_math.hpp"

namespace ebm::cuda {

// Steps whose metrics the device holds before the host must read them back (drain_metrics, or a forced
// read when the ring would wrap).
constexpr int kMetricsRing = 1024;

// One training step's metrics, as written by loss_metrics_kernel and jem_metrics_kernel (StepMetrics' fields,
// same order; ce and accuracy 0 with train.objective "cd").
struct DeviceMetrics {
  double loss, reg, cdiv, real, fake, max_abs_f, ce, accuracy;
};

// The live counters as one training step found them, plus what it drew: written by begin_step_kernel,
// read by the step's other kernels. Kernels that advance the live counters read this copy instead, so no
// kernel reads a value another block of the same launch is rewriting.
struct StepSnapshot {
  uint64_t seed;
  uint64_t off_real, off_choice, off_fresh, off_langevin;
  int64_t batch;        // batch index within the epoch
  int32_t head, size;   // replay buffer ring before this step's write-back
  int32_t n_new;        // fresh-noise rows in this step's fake batch
  int32_t unused;
};

struct DeviceState {
  // Philox streams (kernels/philox.hpp): offsets in 128-bit blocks, the streams of engine/rng.hpp. The
  // order is CpuBackend::rng_state()'s, so checkpoints move between backends.
  uint64_t seed;
  uint64_t off_real, off_choice, off_fresh, off_langevin;
  int32_t head, size;  // replay buffer ring: slot of the oldest image, images held
  int64_t cursor;      // the batch index the next train step reads
  int64_t adam_t;      // Adam steps taken
  double lr, beta1, beta2, eps;
  AdamHyper hyper;     // this step's bias-corrected rate, from adam_t (adam_prepare_kernel)
  uint64_t metrics_count;           // training steps whose metrics were written to the ring
  uint64_t sample_seed, sample_off; // sample()'s stream (RngStream::kGenerate)
  StepSnapshot step;
};

}  // namespace ebm::cuda
