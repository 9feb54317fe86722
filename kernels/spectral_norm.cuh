// Spectral normalisation on the device (engine/spectral_norm.hpp gives the method, its formulas and its source;
// this is the same computation, one thread block per normalised weight). A layer's W [rows, cols] is small
// (at most a few thousand columns): one block walks it a few times, with fixed-order block reductions in
// double (kernels/reduce.cuh), so results are deterministic and graph replays equal eager launches.
// Launchers (kernels in spectral_norm.cu); each returns cudaGetLastError(). No allocation, no host sync:
// they are launched inside the captured training step.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ebm::cuda {

// One normalised weight: W = θ[w_off, w_off + rows·cols) as [rows, cols]; u = u[u_off, u_off + rows),
// v = v[v_off, v_off + cols) (engine/spectral_norm.hpp's SnLayer, plus where v lives).
struct SnLayerDesc {
  int64_t w_off;
  int32_t rows, cols;
  int64_t u_off, v_off;
};

// w_sn (num_params) = θ with each layer's W replaced by W/σ (biases copied); per layer l, v and σ[l] from u_in,
// u' into u_out (u_out may be u_in: the training step's update; another buffer: u left as it is).
[[nodiscard]] cudaError_t spectral_norm_forward(const float* theta, float* w_sn, int64_t num_params, const float* u_in,
                                                float* u_out, float* v, float* sigma, const SnLayerDesc* layers,
                                                int n_layers, cudaStream_t s);

// grad (num_params): dL/dW_sn in, dL/dθ out for the weights ((G − ⟨G, W_sn⟩ u' vᵀ)/σ per layer); biases unchanged.
// u = u', v and σ as spectral_norm_forward left them.
[[nodiscard]] cudaError_t spectral_norm_backward(float* grad, const float* w_sn, const float* u, const float* v,
                                                 const float* sigma, const SnLayerDesc* layers, int n_layers,
                                                 cudaStream_t s);

}  // namespace ebm::cuda
