// Kernels of spectral_norm.cuh: one block per layer, the CPU's order of operations (engine/spectral_norm.cpp)
// with the per-element math of kernels/ebm_math.hpp; only the order of the block reductions differs.
#include "kernels/spectral_norm.cuh"

#include "kernels/ebm_math.hpp"
#include "kernels/reduce.cuh"

namespace ebm::cuda {
namespace {

constexpr int kThreads = 256;

// Block-wide sum, broadcast to every thread.
__device__ double block_sum_all(double x) {
  __shared__ double total;
  x = block_reduce(x, SumOp{}, 0.0);
  if (threadIdx.x == 0) total = x;
  __syncthreads();
  const double r = total;
  __syncthreads();  // `total` is reused by the next call
  return r;
}

__global__ void sn_forward_kernel(const float* __restrict__ theta, float* __restrict__ w_sn, const float* u_in,
                                  float* u_out, float* __restrict__ v_all, float* __restrict__ sigma,
                                  const SnLayerDesc* __restrict__ layers) {
  const SnLayerDesc L = layers[blockIdx.x];
  const float* w = theta + L.w_off;
  const float* u = u_in + L.u_off;
  float* uo = u_out + L.u_off;
  float* v = v_all + L.v_off;
  // v = normalize(Wᵀu): column j's sum over rows in row order, as the CPU
  double ss = 0;
  for (int j = threadIdx.x; j < L.cols; j += blockDim.x) {
    double a = 0;
    for (int i = 0; i < L.rows; ++i) a += double(w[int64_t(i) * L.cols + j]) * double(u[i]);
    const float aj = float(a);
    v[j] = aj;
    ss += double(aj) * double(aj);
  }
  double inv = sn_inv_norm(block_sum_all(ss));  // its barriers also order v's writes before the reads below
  for (int j = threadIdx.x; j < L.cols; j += blockDim.x) v[j] = float(double(v[j]) * inv);
  __syncthreads();
  // W v: one warp per row; every u read above happened before the first barrier, so u_out may be u_in
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int i = warp; i < L.rows; i += warps) {
    const float* wi = w + int64_t(i) * L.cols;
    double d = 0;
    for (int j = lane; j < L.cols; j += 32) d += double(wi[j]) * double(v[j]);
    d = warp_reduce(d, SumOp{});
    if (lane == 0) uo[i] = float(d);  // W v, for now
  }
  __syncthreads();
  ss = 0;
  for (int i = threadIdx.x; i < L.rows; i += blockDim.x) ss += double(uo[i]) * double(uo[i]);
  inv = sn_inv_norm(block_sum_all(ss));
  // u' = normalize(W v), σ = u'ᵀ (W v)
  double dot = 0;
  for (int i = threadIdx.x; i < L.rows; i += blockDim.x) {
    const float wv = uo[i];
    const float un = float(double(wv) * inv);
    uo[i] = un;
    dot += double(un) * double(wv);
  }
  const float s = float(block_sum_all(dot));
  if (threadIdx.x == 0) sigma[blockIdx.x] = s;
  const int64_t n = int64_t(L.rows) * L.cols;
  float* out = w_sn + L.w_off;
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) out[e] = w[e] / s;
}

__global__ void sn_backward_kernel(float* __restrict__ grad, const float* __restrict__ w_sn,
                                   const float* __restrict__ u_all, const float* __restrict__ v_all,
                                   const float* __restrict__ sigma, const SnLayerDesc* __restrict__ layers) {
  const SnLayerDesc L = layers[blockIdx.x];
  float* g = grad + L.w_off;
  const float* w = w_sn + L.w_off;
  const float* u = u_all + L.u_off;
  const float* v = v_all + L.v_off;
  const int64_t n = int64_t(L.rows) * L.cols;
  double dot = 0;  // ⟨G, W_sn⟩
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) dot += double(g[e]) * double(w[e]);
  dot = block_sum_all(dot);
  const float s = sigma[blockIdx.x];
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
    const int64_t i = e / L.cols, j = e - i * L.cols;
    g[e] = sn_grad(g[e], dot, u[i], v[j], s);
  }
}

}  // namespace

cudaError_t spectral_norm_forward(const float* theta, float* w_sn, int64_t num_params, const float* u_in, float* u_out,
                                  float* v, float* sigma, const SnLayerDesc* layers, int n_layers, cudaStream_t s) {
  // biases as they are; the kernel overwrites every weight
  if (const cudaError_t e = cudaMemcpyAsync(w_sn, theta, sizeof(float) * size_t(num_params), cudaMemcpyDeviceToDevice, s);
      e != cudaSuccess)
    return e;
  sn_forward_kernel<<<n_layers, kThreads, 0, s>>>(theta, w_sn, u_in, u_out, v, sigma, layers);
  return cudaGetLastError();
}

cudaError_t spectral_norm_backward(float* grad, const float* w_sn, const float* u, const float* v, const float* sigma,
                                   const SnLayerDesc* layers, int n_layers, cudaStream_t s) {
  sn_backward_kernel<<<n_layers, kThreads, 0, s>>>(grad, w_sn, u, v, sigma, layers);
  return cudaGetLastError();
}

}  // namespace ebm::cuda
