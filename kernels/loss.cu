// Kernels of loss.cuh.
#include "kernels/loss.cuh"

#include <cmath>

#include "kernels/ebm_math.hpp"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"

namespace ebm::cuda {
namespace {

// Over f (nr + nf) = [f(real); f(fake)]: df = dL/df per row, and the step's metrics into the ring slot
// metrics_count % kMetricsRing (exactly CpuBackend::train_step's formulas, sums in double). One block.
__global__ void loss_metrics_kernel(const float* __restrict__ f, float* __restrict__ df, int nr, int nf,
                                    double alpha, DeviceState* st, DeviceMetrics* ring) {
  const int n = nr + nf;
  const float a = static_cast<float>(alpha), inv_nr = 1.0f / nr, inv_nf = 1.0f / nf;
  double sr = 0, sr2 = 0, sf = 0, sf2 = 0;
  float mx = 0.0f;
  int bad = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = f[i];
    const double d = v;
    if (i < nr) {
      sr += d, sr2 += d * d;
      df[i] = dloss_dreal(v, a, inv_nr);
    } else {
      sf += d, sf2 += d * d;
      df[i] = dloss_dfake(v, a, inv_nf);
    }
    if (isfinite(v)) mx = fmaxf(mx, fabsf(v));
    else bad = 1;
  }
  sr = block_reduce(sr, SumOp{}, 0.0);
  sr2 = block_reduce(sr2, SumOp{}, 0.0);
  sf = block_reduce(sf, SumOp{}, 0.0);
  sf2 = block_reduce(sf2, SumOp{}, 0.0);
  mx = block_reduce(mx, MaxOp{}, 0.0f);
  bad = block_reduce(bad, MaxOp{}, 0);
  if (threadIdx.x == 0) {
    DeviceMetrics m{};
    m.real = sr / nr;
    m.fake = sf / nf;
    m.cdiv = m.fake - m.real;
    m.reg = a * (sr2 / nr + sf2 / nf);  // float alpha, as engine/loss.hpp
    m.loss = m.cdiv + m.reg;
    m.max_abs_f = bad ? NAN : static_cast<double>(mx);  // the divergence guard must see NaN/inf
    const uint64_t k = st->metrics_count;
    ring[k % kMetricsRing] = m;
    st->metrics_count = k + 1;
  }
}

// One validation batch (test rows, noise rows), in double: out[0] = mean f[0, c), out[1] = mean f[c, 2c),
// out[2] = max |f| over all 2c rows, NaN when any of them is NaN/inf (the divergence guard's input).
__global__ void pair_means_kernel(const float* __restrict__ f, int c, double* __restrict__ out) {
  double s0 = 0, s1 = 0;
  float mx = 0.0f;
  int bad = 0;
  for (int i = threadIdx.x; i < c; i += blockDim.x) {
    const float a = f[i], b = f[c + i];
    s0 += a, s1 += b;
    if (isfinite(a) && isfinite(b)) mx = fmaxf(mx, fmaxf(fabsf(a), fabsf(b)));
    else bad = 1;
  }
  s0 = block_reduce(s0, SumOp{}, 0.0);
  s1 = block_reduce(s1, SumOp{}, 0.0);
  mx = block_reduce(mx, MaxOp{}, 0.0f);
  bad = block_reduce(bad, MaxOp{}, 0);
  if (threadIdx.x == 0) out[0] = s0 / c, out[1] = s1 / c, out[2] = bad ? NAN : static_cast<double>(mx);
}

}  // namespace

cudaError_t loss_metrics(const float* f, float* df, int nr, int nf, double alpha, DeviceState* st,
                         DeviceMetrics* ring, cudaStream_t s) {
  loss_metrics_kernel<<<1, 256, 0, s>>>(f, df, nr, nf, alpha, st, ring);
  return cudaGetLastError();
}

cudaError_t pair_means(const float* f, int c, double* out, cudaStream_t s) {
  pair_means_kernel<<<1, 256, 0, s>>>(f, c, out);
  return cudaGetLastError();
}

}  // namespace ebm::cuda
