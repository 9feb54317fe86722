// Per-element math of the method, written once and used by the CPU backend and the CUDA kernels, so
// the CPU tests cover what the GPU computes.
#pragma once
#include <cmath>

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

}  // namespace ebm
