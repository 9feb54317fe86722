// Per-element math of the method, written once and used by the CPU backend and the CUDA kernels, so
// the CPU tests cover what the GPU computes.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/hostdevice.hpp"

namespace ebm {

EBM_HD float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

EBM_HD float sigmoidf(float z) { return 1.0f / (1.0f + expf(-z)); }

// swish(z) = z·σ(z)
EBM_HD float swishf(float z) { return z * sigmoidf(z); }

// swish'(z) = σ(z)·(1 + z·(1 − σ(z)))
EBM_HD float swish_gradf(float z) {
  const float s = sigmoidf(z);
  return s * (1.0f + z * (1.0f - s));
}

// Langevin, first half: x ← clip(x + noise·n, −1, 1), n ~ N(0,1).
EBM_HD float langevin_perturb(float x, float noise, float n) { return clampf(x + noise * n, -1.0f, 1.0f); }

// Langevin, second half, given df/dx: g = ∇x(−f) = −df/dx, clipped to ±grad_clip; x ← clip(x − step·g, −1, 1).
EBM_HD float langevin_descend(float x, float dfdx, float step_size, float grad_clip) {
  const float g = clampf(-dfdx, -grad_clip, grad_clip);
  return clampf(x - step_size * g, -1.0f, 1.0f);
}

// Adam as Keras computes it (the seed's optimizer): lr_t = lr·√(1−β2ᵗ)/(1−β1ᵗ), ε added to √v.
struct AdamHyper {
  float lr_t, beta1, beta2, eps;
};

EBM_HD AdamHyper adam_hyper(double lr, double beta1, double beta2, double eps, long long t) {
  const double c = sqrt(1.0 - pow(beta2, static_cast<double>(t))) / (1.0 - pow(beta1, static_cast<double>(t)));
  return {static_cast<float>(lr * c), static_cast<float>(beta1), static_cast<float>(beta2), static_cast<float>(eps)};
}

EBM_HD void adam_update(float& p, float& m, float& v, float g, const AdamHyper& h) {
  m += (g - m) * (1.0f - h.beta1);
  v += (g * g - v) * (1.0f - h.beta2);
  p -= h.lr_t * m / (sqrtf(v) + h.eps);
}

// Loss of one step: dL/df for a real row and a fake row (each mean over its own rows).
//   loss = mean f(fake) − mean f(real) + α·(mean f(real)² + mean f(fake)²)
EBM_HD float dloss_dreal(float f, float alpha, float inv_nr) { return (-1.0f + 2.0f * alpha * f) * inv_nr; }
EBM_HD float dloss_dfake(float f, float alpha, float inv_nf) { return (1.0f + 2.0f * alpha * f) * inv_nf; }

// --- JEM (Grathwohl et al., ICLR 2020, "Your classifier is secretly an energy based model") ---
// A K-output net's logits f [K] define the joint energy E(x, y) = −f_y(x) and the unconditional one
// E(x) = −logsumexp_y f_y(x). For K = 1 that is f itself: the seed's energy net is the case K = 1.
// s = logsumexp_k f_k and, where p is given, p_k = softmax(f)_k = exp(f_k − s) (∂s/∂f_k), computed from the
// largest logit so that no exp overflows. NaN in any logit gives NaN (the divergence guard sees it).
template <class T>
EBM_HD T logsumexp_softmax(const T* f, int K, T* p) {
  if (K == 1) {
    if (p) p[0] = T(1);
    return f[0];
  }
  using std::exp;
  using std::log;
  T m = f[0];
  for (int k = 1; k < K; ++k) m = f[k] > m ? f[k] : m;
  if (!(m > -INFINITY && m < INFINITY)) m = T(0);  // NaN or ±inf logits: s and p come out NaN/inf below
  T z = 0;
  for (int k = 0; k < K; ++k) z += exp(f[k] - m);
  const T s = m + log(z);
  if (p)
    for (int k = 0; k < K; ++k) p[k] = exp(f[k] - s);
  return s;
}

// One row of the JEM loss (engine/loss.hpp: jem_loss_rows on the CPU, kernels/jem.cu on the GPU), with
// s = logsumexp f and p = softmax(f):
//   d [K] = dL/df = cd_weight·ds·p  (+ ce_weight·(p − onehot(y))·inv_r for a real row),
//   ds = dL/ds of the CD term: (−1 + 2αs)·inv_r for a real row, (1 + 2αs)·inv_f for a fake one (y < 0).
// inv_r = 1/n_real and inv_f = 1/n_fake over the global batch. Returns s; for a real row also *ce = s − f_y
// (its −log p_y) and *correct = [argmax f = y] (the first largest logit).
template <class T>
EBM_HD T jem_row(const T* f, int K, int y, T inv_r, T inv_f, T a, T cdw, T cew, T* d, T* ce, int* correct) {
  const T s = logsumexp_softmax(f, K, d);  // d = p for now
  if (y < 0) {
    const T ds = cdw * ((T(1) + T(2) * a * s) * inv_f);
    for (int k = 0; k < K; ++k) d[k] *= ds;
    return s;
  }
  const T ds = cdw * ((T(-1) + T(2) * a * s) * inv_r);
  int best = 0;
  for (int k = 1; k < K; ++k) best = f[k] > f[best] ? k : best;
  *ce = s - f[y];
  *correct = best == y;
  for (int k = 0; k < K; ++k) d[k] = ds * d[k] + cew * (d[k] - T(k == y)) * inv_r;
  return s;
}

// A JEM step's metrics from its sums v = {Σ s_real, Σ s²_real, Σ s_fake, Σ s²_fake, Σ ce, Σ correct} over the
// global counts, into m (StepMetrics' fields, or the device ring's DeviceMetrics): the loss of jem_row.
template <class M>
EBM_HD void jem_fill_metrics(const double* v, int64_t n_real, int64_t n_fake, float alpha, float cd_weight,
                             float ce_weight, M& m) {
  m.real = v[0] / double(n_real);
  m.fake = v[2] / double(n_fake);
  m.cdiv = m.fake - m.real;
  m.reg = double(alpha) * (v[1] / double(n_real) + v[3] / double(n_fake));
  m.ce = v[4] / double(n_real);
  m.accuracy = v[5] / double(n_real);
  m.loss = double(cd_weight) * (m.cdiv + m.reg) + double(ce_weight) * m.ce;
}

// The Langevin chains' upstream weights of one row of a K-output net (engine/loss.hpp chain_weights): the
// one-hot of y for the class-conditional E(x, y) = −f_y (y ≥ 0), softmax(f) = ∂ logsumexp f/∂f for E(x) (y < 0).
template <class T>
EBM_HD void chain_weight_row(const T* f, int K, int y, T* w) {
  if (y >= 0) {
    for (int k = 0; k < K; ++k) w[k] = T(k == y);
  } else {
    logsumexp_softmax(f, K, w);
  }
}

// --- Spectral normalisation (Miyato et al. 2018; torch.nn.utils.spectral_norm), engine/spectral_norm.hpp ---
// normalize(x) = x / max(‖x‖, 1e-12): the factor, from Σ x² accumulated in double.
EBM_HD double sn_inv_norm(double sum_sq) {
  const double n = sqrt(sum_sq);
  return 1.0 / (n > 1e-12 ? n : 1e-12);
}

// Backward through W_sn = W/σ with u', v held constant: dL/dW_ij = (G_ij − ⟨G, W_sn⟩·u'_i·v_j)/σ,
// G = dL/dW_sn. In double, so both backends round once, to float, at the end.
EBM_HD float sn_grad(float g, double g_dot_wsn, float u, float v, float sigma) {
  return static_cast<float>((static_cast<double>(g) - g_dot_wsn * static_cast<double>(u) * static_cast<double>(v)) /
                            static_cast<double>(sigma));
}

// --- EMA of the weights: θ_ema ← d·θ_ema + (1−d)·θ after every Adam update ---
// One explicit fma in double, rounded once to float: the same bits on the CPU and the GPU (no contraction
// left for a compiler to choose).
EBM_HD void ema_update(float& ema, float p, double decay) {
  ema = static_cast<float>(fma(decay, static_cast<double>(ema), (1.0 - decay) * static_cast<double>(p)));
}

}  // namespace ebm
