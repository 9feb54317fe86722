// The dense head, D (= C·H·W of the last conv layer, NCHW-flattened) → 1. Tiny (256 → 1 for the seed's
// net), so plain kernels: a warp per image forward, a thread per weight backward. Its input gradient is
// fused into swish_backward (kernels/swish.cuh). Launchers (kernels in dense.cu); each returns cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

namespace ebm::cuda {

// f (n) = bd + a (n, D) · wd (D).
[[nodiscard]] cudaError_t dense_forward(const float* a, const float* wd, const float* bd, float* f, int n, int D,
                                        cudaStream_t s);

// grad_w (D) = Σ_i df[i]·a[i, :], grad_b (1) = Σ_i df[i] (overwritten, not accumulated).
[[nodiscard]] cudaError_t dense_backward(const float* a, const float* df, float* grad_w, float* grad_b, int n, int D,
                                         cudaStream_t s);

}  // namespace ebm::cuda
