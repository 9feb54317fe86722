// Kernels of dense.cuh.
#include "kernels/dense.cuh"

#include <cstdint>

#include "kernels/reduce.cuh"

namespace ebm::cuda {
namespace {

// One warp per output (row, k): warp w computes f[w] = f[row·K + k], row = w / K.
__global__ void dense_forward_kernel(const float* __restrict__ a, const float* __restrict__ wd,
                                     const float* __restrict__ bd, float* __restrict__ f, int n, int D, int K) {
  const int lane = threadIdx.x & 31;
  const int64_t out = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  if (out >= int64_t(n) * K) return;  // whole warps leave together
  const int64_t row = out / K;
  const int k = int(out - row * K);
  const float* x = a + row * D;
  const float* w = wd + int64_t(k) * D;
  float acc = 0.0f;
  for (int j = lane; j < D; j += 32) acc += w[j] * x[j];
  acc = warp_reduce(acc, SumOp{});
  if (lane == 0) f[out] = acc + bd[k];
}

// K·(D + 1) threads: thread (k, j < D) for weight [k, j] (reads of a coalesce across j), (k, D) for bias k.
__global__ void dense_backward_kernel(const float* __restrict__ a, const float* __restrict__ df,
                                      float* __restrict__ grad_w, float* __restrict__ grad_b, int n, int D, int K) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= int64_t(K) * (D + 1)) return;
  const int k = int(t / (D + 1)), j = int(t - int64_t(k) * (D + 1));
  float acc = 0.0f;
  if (j < D) {
    for (int i = 0; i < n; ++i) acc += df[int64_t(i) * K + k] * a[int64_t(i) * D + j];
    grad_w[int64_t(k) * D + j] = acc;
  } else {
    for (int i = 0; i < n; ++i) acc += df[int64_t(i) * K + k];
    grad_b[k] = acc;
  }
}

}  // namespace

cudaError_t dense_forward(const float* a, const float* wd, const float* bd, float* f, int n, int D, int K,
                          cudaStream_t s) {
  const int warps_per_block = 8;
  const int64_t outs = int64_t(n) * K;
  if (outs == 0) return cudaSuccess;
  dense_forward_kernel<<<unsigned((outs + warps_per_block - 1) / warps_per_block), 32 * warps_per_block, 0, s>>>(
      a, wd, bd, f, n, D, K);
  return cudaGetLastError();
}

cudaError_t dense_backward(const float* a, const float* df, float* grad_w, float* grad_b, int n, int D, int K,
                           cudaStream_t s) {
  const int64_t threads = int64_t(K) * (D + 1);
  dense_backward_kernel<<<unsigned((threads + 255) / 256), 256, 0, s>>>(a, df, grad_w, grad_b, n, D, K);
  return cudaGetLastError();
}

}  // namespace ebm::cuda
