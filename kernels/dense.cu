// Kernels of dense.cuh.
#include "kernels/dense.cuh"

#include <cstdint>

#include "kernels/reduce.cuh"

namespace ebm::cuda {
namespace {

// One warp per row.
__global__ void dense_forward_kernel(const float* __restrict__ a, const float* __restrict__ wd,
                                     const float* __restrict__ bd, float* __restrict__ f, int n, int D) {
  const int lane = threadIdx.x & 31;
  const int64_t row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5;
  if (row >= n) return;  // whole warps leave together
  const float* x = a + row * D;
  float acc = 0.0f;
  for (int j = lane; j < D; j += 32) acc += wd[j] * x[j];
  acc = warp_reduce(acc, SumOp{});
  if (lane == 0) f[row] = acc + bd[0];
}

// D threads for the weights (reads of a coalesce across j), thread D for the bias.
__global__ void dense_backward_kernel(const float* __restrict__ a, const float* __restrict__ df,
                                      float* __restrict__ grad_w, float* __restrict__ grad_b, int n, int D) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j > D) return;
  float acc = 0.0f;
  if (j < D) {
    for (int i = 0; i < n; ++i) acc += df[i] * a[int64_t(i) * D + j];
    grad_w[j] = acc;
  } else {
    for (int i = 0; i < n; ++i) acc += df[i];
    grad_b[0] = acc;
  }
}

}  // namespace

cudaError_t dense_forward(const float* a, const float* wd, const float* bd, float* f, int n, int D, cudaStream_t s) {
  const int rows_per_block = 8;
  dense_forward_kernel<<<(n + rows_per_block - 1) / rows_per_block, 32 * rows_per_block, 0, s>>>(a, wd, bd, f, n, D);
  return cudaGetLastError();
}

cudaError_t dense_backward(const float* a, const float* df, float* grad_w, float* grad_b, int n, int D,
                           cudaStream_t s) {
  dense_backward_kernel<<<(D + 1 + 255) / 256, 256, 0, s>>>(a, df, grad_w, grad_b, n, D);
  return cudaGetLastError();
}

}  // namespace ebm::cuda
