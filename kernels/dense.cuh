// The dense head, D (= C·H·W of the last conv layer, NCHW-flattened) → K outputs (1 for the energy net, K > 1
// for a classifier's logits). Tiny (256 → 1 for the seed's net), so plain kernels: a warp per (image, output)
// forward, a thread per weight backward. Its input gradient is fused into swish_backward (kernels/swish.cuh).
// Launchers (kernels in dense.cu); each returns cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

namespace ebm::cuda {

// f (n, K) = a (n, D) · wdᵀ + bd, with wd (K, D) and bd (K).
[[nodiscard]] cudaError_t dense_forward(const float* a, const float* wd, const float* bd, float* f, int n, int D,
                                        int K, cudaStream_t s);

// grad_w (K, D) = Σ_i df[i, k]·a[i, :], grad_b (K) = Σ_i df[i, k] for df (n, K) (overwritten, not accumulated).
[[nodiscard]] cudaError_t dense_backward(const float* a, const float* df, float* grad_w, float* grad_b, int n, int D,
                                         int K, cudaStream_t s);

}  // namespace ebm::cuda
