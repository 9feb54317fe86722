// Kernels of jem.cuh.
#include "kernels/jem.cuh"

#include <cmath>

#include "kernels/ebm_math.hpp"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"

namespace ebm::cuda {
namespace {

// One thread per row (K is a handful of classes), rows strided over the block; the block's sums in double.
__global__ void jem_loss_partials_kernel(const float* __restrict__ f, float* __restrict__ df, int nr, int nf, int K,
                                         const int32_t* __restrict__ y, float inv_r, float inv_f, JemLossWeights w,
                                         double* __restrict__ sums) {
  double v[6] = {0, 0, 0, 0, 0, 0};
  double mx = 0, bad = 0;
  for (int i = threadIdx.x; i < nr + nf; i += blockDim.x) {
    const float* fi = f + int64_t(i) * K;
    const bool real = i < nr;
    float ce = 0;
    int correct = 0;
    const float s = jem_row(fi, K, real ? int(y[i]) : -1, inv_r, inv_f, w.alpha, w.cd_weight, w.ce_weight,
                            df + int64_t(i) * K, &ce, &correct);
    v[real ? 0 : 2] += double(s);
    v[real ? 1 : 3] += double(s) * double(s);
    if (real) v[4] += double(ce), v[5] += correct;
    for (int k = 0; k < K; ++k) {
      if (isfinite(fi[k])) mx = fmax(mx, fabs(double(fi[k])));
      else bad = 1;
    }
  }
  for (double& x : v) x = block_reduce(x, SumOp{}, 0.0);
  mx = block_reduce(mx, MaxOp{}, 0.0);
  bad = block_reduce(bad, MaxOp{}, 0.0);
  if (threadIdx.x == 0) {
    for (int k = 0; k < 6; ++k) sums[k] = v[k];
    sums[6] = mx, sums[7] = bad;
  }
}

__global__ void jem_metrics_kernel(const double* __restrict__ sums, int64_t n_real, int64_t n_fake, JemLossWeights w,
                                   DeviceState* st, DeviceMetrics* ring) {
  DeviceMetrics m{};
  jem_fill_metrics(sums, n_real, n_fake, w.alpha, w.cd_weight, w.ce_weight, m);
  m.max_abs_f = sums[7] != 0 ? NAN : sums[6];  // the divergence guard must see NaN/inf
  const uint64_t k = st->metrics_count;
  ring[k % kMetricsRing] = m;
  st->metrics_count = k + 1;
}

__global__ void chain_weights_kernel(const float* __restrict__ f, int n, int K, const int32_t* __restrict__ classes,
                                     float* __restrict__ w) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    chain_weight_row(f + int64_t(i) * K, K, classes ? int(classes[i]) : -1, w + int64_t(i) * K);
}

__global__ void logsumexp_rows_kernel(const float* __restrict__ f, int n, int K, float* __restrict__ out) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    out[i] = logsumexp_softmax(f + int64_t(i) * K, K, static_cast<float*>(nullptr));
}

__global__ void gather_labels_kernel(const int32_t* __restrict__ labels, const int32_t* __restrict__ perm,
                                     const DeviceState* st, int32_t* __restrict__ y, int nr, int bs) {
  const int64_t first = st->step.batch * bs;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < nr; i += gridDim.x * blockDim.x)
    y[i] = labels[perm[first + i]];
}

}  // namespace

cudaError_t jem_loss_partials(const float* f, float* df, int nr, int nf, int K, const int32_t* y, int64_t n_real,
                              int64_t n_fake, JemLossWeights w, double* sums, cudaStream_t s) {
  // 1/n in float, as jem_loss_rows<float> rounds them on the CPU
  jem_loss_partials_kernel<<<1, 256, 0, s>>>(f, df, nr, nf, K, y, 1.0f / float(n_real), 1.0f / float(n_fake), w,
                                             sums);
  return cudaGetLastError();
}

cudaError_t jem_metrics(const double* sums, int64_t n_real, int64_t n_fake, JemLossWeights w, DeviceState* st,
                        DeviceMetrics* ring, cudaStream_t s) {
  jem_metrics_kernel<<<1, 1, 0, s>>>(sums, n_real, n_fake, w, st, ring);
  return cudaGetLastError();
}

cudaError_t chain_weights(const float* f, int n, int K, const int32_t* classes, float* w, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  chain_weights_kernel<<<grid_for(n, 128), 128, 0, s>>>(f, n, K, classes, w);
  return cudaGetLastError();
}

cudaError_t logsumexp_rows(const float* f, int n, int K, float* out, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  logsumexp_rows_kernel<<<grid_for(n, 128), 128, 0, s>>>(f, n, K, out);
  return cudaGetLastError();
}

cudaError_t gather_labels(const int32_t* labels, const int32_t* perm, const DeviceState* st, int32_t* y, int nr, int bs,
                          cudaStream_t s) {
  if (nr <= 0) return cudaSuccess;
  gather_labels_kernel<<<grid_for(nr, 128), 128, 0, s>>>(labels, perm, st, y, nr, bs);
  return cudaGetLastError();
}

}  // namespace ebm::cuda
