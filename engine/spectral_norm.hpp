// Spectral normalisation of the network's weights (Miyato et al. 2018, "Spectral Normalization for
// Generative Adversarial Networks"; as torch.nn.utils.spectral_norm with n_power_iterations = 1, one
// iteration per training step), on the host: the CPU backend's implementation and the reference the CUDA
// kernels (kernels/spectral_norm.cuh) compute step for step.
//
// Every conv weight, reshaped to W [Cout, Cin·k·k] (its [Cout,Cin,k,k] storage, row-major), and the dense
// weight W [1, D] is divided by an estimate of its largest singular value; biases are not normalised.
// State: one vector u per layer [rows] (Cout, or 1 for the dense layer), all layers' concatenated in layer
// order (convs, then dense) — Backend::sn_state(). Initial u: normal draws of stream
// (seed, RngStream::kSpectralNorm) from block 0, each layer's normalised.
//
// eff(W, u), normalize(x) = x / max(‖x‖, 1e-12):
//   v  = normalize(Wᵀu)      [cols]
//   u' = normalize(W v)      [rows]
//   σ  = u'ᵀ W v
//   W_sn = W / σ
// A training step starts with (W_sn, u) ← eff(θ, u); the step's Langevin chains, loss and gradient use W_sn.
// Backward with u', v held constant (torch detaches them): dL/dW = (G − ⟨G, W_sn⟩ u' vᵀ)/σ, G = dL/dW_sn
// (kernels/ebm_math.hpp sn_grad). Sums are accumulated in double, each result rounded once to T.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/net.hpp"

namespace ebm {

// One normalised weight: W = θ[w_off, w_off + rows·cols) as [rows, cols]; its u is u[u_off, u_off + rows).
struct SnLayer {
  int64_t w_off;
  int rows, cols;
  int64_t u_off;
};

std::vector<SnLayer> sn_layers(const NetSpec& net);  // convs in order, then the dense layer
int64_t sn_state_size(const NetSpec& net);           // Σ rows: the length of the concatenated u's
std::vector<float> sn_initial_state(const NetSpec& net, uint64_t seed);

// eff() of one layer: w_sn [rows·cols] = W/σ, v [cols], u_out [rows] = u' (u_out may be u); returns σ.
template <class T>
T sn_layer_forward(const T* w, int rows, int cols, const T* u, T* u_out, T* v, T* w_sn);

// g [rows·cols]: G = dL/dW_sn in, dL/dW out; u = u', v and σ as sn_layer_forward left them.
template <class T>
void sn_layer_backward(T* g, const T* w_sn, int rows, int cols, const T* u, const T* v, T sigma);

// The whole network: out [num_params] = θ with every weight replaced by W_sn (biases copied), u [state size]
// updated to u' when `update_u`; per layer, σ into sigma [layers] and v into v [Σ cols] when given (the
// backward pass needs them). out must not alias theta.
void sn_apply(const NetSpec& net, const float* theta, float* u, bool update_u, float* out, float* sigma = nullptr,
              float* v = nullptr);
// grad [num_params]: dL/dW_sn in, dL/dθ out (weights transformed, biases unchanged), from sn_apply's w_sn,
// u (updated), sigma and v.
void sn_backward(const NetSpec& net, float* grad, const float* w_sn, const float* u, const float* sigma,
                 const float* v);
int64_t sn_v_size(const NetSpec& net);  // Σ cols: sn_apply's v

}  // namespace ebm
