// The conv layers' element-wise halves: bias + swish forward, and swish backward fused with the bias
// gradient (and, for the layer that feeds the dense head, with the dense layer's input gradient).
// Activations are NCHW: element (i, c, q) of a layer with C channels and HW = H·W pixels is at (i·C + c)·HW + q.
// Launchers (kernels in swish.cu); each returns cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

namespace ebm::cuda {

// z (n, C, HW) in place: z ← z + b[c]; a (n, C, HW) ← swish(z). z keeps the bias for backward.
[[nodiscard]] cudaError_t bias_swish_forward(float* z, float* a, const float* bias, int n, int C, int HW,
                                             cudaStream_t s);

// Blocks per channel of swish_backward: ~8 elements per thread, at least 1, at most 256.
inline int swish_backward_blocks(int n, int HW) {
  const long long b = (static_cast<long long>(n) * HW + 2047) / 2048;
  return static_cast<int>(b < 1 ? 1 : (b > 256 ? 256 : b));
}

// Upstream gradient: da (n, C, HW), or, for the last conv layer, the dense head's df (n, K) and weights
// wd (K, C·HW): da[i, c, q] = Σ_k df[i, k]·wd[k, c·HW + q], formed on the fly.
struct SwishUpstream {
  const float* da = nullptr;
  const float* df = nullptr;
  const float* wd = nullptr;
  int K = 1;  // the dense head's outputs
};

// dz (n, C, HW) = da ⊙ swish'(z) (dz may alias da); grad_b (C) = Σ over rows and pixels of dz when non-null,
// using partial (C·swish_backward_blocks(n, HW)) as scratch: block sums added in fixed order, no atomics,
// so graph replays and eager runs agree bit for bit.
[[nodiscard]] cudaError_t swish_backward(const SwishUpstream& up, const float* z, float* dz, float* partial,
                                         float* grad_b, int n, int C, int HW, cudaStream_t s);

}  // namespace ebm::cuda
