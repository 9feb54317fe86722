// train.objective "jem" on the device (Grathwohl et al. 2020; engine/loss.hpp): a K-output net's logits f (n, K)
// read as E(x) = −logsumexp f and E(x, y) = −f_y. The per-row math is kernels/ebm_math.hpp's (jem_row,
// chain_weight_row, logsumexp_softmax), the CPU backend's own, so the two backends differ only in rounding
// (CUDA's expf/logf, the sums' order). Launchers (kernels in jem.cu); each returns cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_state.cuh"

namespace ebm::cuda {

// The loss's weights (engine/loss.hpp JemWeights): α of the CD regulariser, the CD and cross-entropy terms' weights.
struct JemLossWeights {
  float alpha, cd_weight, ce_weight;
};

// Values in jem_loss_partials' `sums`: the six JemSums, then max |f| over finite logits and 1 if any is NaN/inf.
constexpr int kJemPartials = 8;

// Over this rank's rows f (nr + nf, K) = [f(real); f(fake)] with the real rows' labels y (nr): df (nr + nf, K) =
// dL/df (jem_row, means over the global counts n_real and n_fake), and the partial sums the ranks then reduce:
// sums[0..5] = Σ s_real, Σ s²_real, Σ s_fake, Σ s²_fake, Σ ce, Σ correct (NCCL sum), sums[6..7] = max |f| over
// finite logits, 1 if any logit is NaN/inf (NCCL max). One block; sums in double, in a fixed order.
[[nodiscard]] cudaError_t jem_loss_partials(const float* f, float* df, int nr, int nf, int K, const int32_t* y,
                                            int64_t n_real, int64_t n_fake, JemLossWeights w, double* sums,
                                            cudaStream_t s);

// After the all-reduce of `sums` (or straight after jem_loss_partials on one rank): the step's metrics
// (jem_fill_metrics, max |f| NaN when any logit was not finite) into the ring slot metrics_count % kMetricsRing,
// then the count advanced. One thread.
[[nodiscard]] cudaError_t jem_metrics(const double* sums, int64_t n_real, int64_t n_fake, JemLossWeights w,
                                      DeviceState* st, DeviceMetrics* ring, cudaStream_t s);

// The Langevin chains' upstream weights, w (n, K) from f (n, K): softmax(f) per row (classes null: the
// unconditional E(x)), or the one-hot of classes[i] (the class-conditional E(x, y_i)).
[[nodiscard]] cudaError_t chain_weights(const float* f, int n, int K, const int32_t* classes, float* w,
                                        cudaStream_t s);

// out (n) = logsumexp of each row of f (n, K): the unconditional value s = −E(x).
[[nodiscard]] cudaError_t logsumexp_rows(const float* f, int n, int K, float* out, cudaStream_t s);

// The real rows' labels of a training step: y (nr) ← labels[perm[st->step.batch·bs + i]], the rows gather_real
// takes (perm already offset by this rank's first row). labels: int32 (N).
[[nodiscard]] cudaError_t gather_labels(const int32_t* labels, const int32_t* perm, const DeviceState* st, int32_t* y,
                                        int nr, int bs, cudaStream_t s);

}  // namespace ebm::cuda
