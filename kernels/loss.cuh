// The contrastive-divergence loss on the device (DESIGN §1): dL/df per row and a step's metrics, and the
// validation means. Launchers (kernels in loss.cu); each returns cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_state.cuh"

namespace ebm::cuda {

// Over f (nr + nf) = [f(real); f(fake)]: df (nr + nf) = dL/df per row, and the step's metrics (loss, reg,
// cdiv, real, fake, max |f|; NaN max when any f is NaN/inf) into ring slot st->metrics_count % kMetricsRing,
// then the count advanced — CpuBackend's cd_loss (engine/loss.hpp), sums in double. One block.
[[nodiscard]] cudaError_t loss_metrics(const float* f, float* df, int nr, int nf, double alpha, DeviceState* st,
                                       DeviceMetrics* ring, cudaStream_t s);

// One validation batch of c test rows then c noise rows, f (2c): out (3, double) = mean f[0, c),
// mean f[c, 2c), max |f| over all 2c rows (NaN when any is NaN/inf: the divergence guard's input). One block.
[[nodiscard]] cudaError_t pair_means(const float* f, int c, double* out, cudaStream_t s);

}  // namespace ebm::cuda
