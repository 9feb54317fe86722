// The contrastive-divergence loss of one step (DESIGN §1), its metrics and dL/df per row.
//   cdiv = mean f(fake) − mean f(real);  reg = α·(mean f(real)² + mean f(fake)²);  loss = cdiv + reg
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/backend.hpp"
#include "engine/error.hpp"
#include "kernels/ebm_math.hpp"

namespace ebm {

// The divergence guard's measure of a set of f values: max |f|, NaN when any of them is NaN or infinite
// (so that no maximum can hide it). guard_max combines two such measures.
inline double guard_max(double a, double b) { return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b); }
inline double max_abs_f(const float* f, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = guard_max(m, std::isfinite(f[i]) ? double(std::fabs(f[i])) : NAN);
  return m;
}

// f_real [nr], f_fake [nf] -> metrics; df_real [nr], df_fake [nf] = dloss/df (each mean over its own rows).
inline StepMetrics cd_loss(const float* f_real, int nr, const float* f_fake, int nf, float alpha, float* df_real,
                           float* df_fake) {
  StepMetrics m;
  double sr = 0, sf = 0, sr2 = 0, sf2 = 0;
  for (int i = 0; i < nr; ++i) sr += f_real[i], sr2 += double(f_real[i]) * f_real[i];
  for (int i = 0; i < nf; ++i) sf += f_fake[i], sf2 += double(f_fake[i]) * f_fake[i];
  m.max_abs_f = guard_max(max_abs_f(f_real, nr), max_abs_f(f_fake, nf));
  m.real = sr / nr;
  m.fake = sf / nf;
  m.cdiv = m.fake - m.real;
  m.reg = alpha * (sr2 / nr + sf2 / nf);
  m.loss = m.cdiv + m.reg;
  for (int i = 0; i < nr; ++i) df_real[i] = dloss_dreal(f_real[i], alpha, 1.0f / nr);
  for (int i = 0; i < nf; ++i) df_fake[i] = dloss_dfake(f_fake[i], alpha, 1.0f / nf);
  return m;
}

// The objective and the net's head agree: "cd" trains the energy net (K = 1), "jem" a K-output net (K > 1).
inline void require_objective_net(const EngineOptions& o) {
  const int K = o.net.outputs;
  if (o.objective == Objective::kCd && K != 1)
    user_fail("train.objective \"cd\" trains an energy net with one output, but model.outputs is ", K,
              "; a net with one output per class trains with train.objective \"jem\"");
  if (o.objective == Objective::kJem && K < 2)
    user_fail("train.objective \"jem\" needs one output per class, but model.outputs is ", K,
              "; set model.outputs to the number of classes (10 for MNIST)");
}

// --- train.objective "jem" (Grathwohl et al. 2020; kernels/ebm_math.hpp logsumexp_softmax) ---
// With K logits f [K] per row, s = logsumexp_k f_k stands where the seed has f (E(x) = −s) and p = softmax(f):
//   cdiv = mean s(fake) − mean s(real);  reg = α·(mean s(real)² + mean s(fake)²);  ce = mean_real (s − f_y)
//   loss = cd_weight·(cdiv + reg) + ce_weight·ce
//   dL/df_ik = cd_weight·dloss_d{real,fake}(s_i)·p_ik  +  [real rows] ce_weight·(p_ik − [k = y_i]) / n_real
// (∂s/∂f_k = p_k; the cross-entropy's gradient is softmax minus one-hot). Every mean is over the global
// counts, so that data-parallel ranks add their rows' terms (JemSums, all-reduced) into the 1-rank loss.
struct JemWeights {
  float alpha = 0.1f, cd_weight = 1.0f, ce_weight = 1.0f;
};

// This rank's partial sums: Σ s and Σ s² over real and fake rows, Σ −log p_y and Σ [argmax f = y] over real rows.
struct JemSums {
  double v[6] = {0, 0, 0, 0, 0, 0};  // s_real, s²_real, s_fake, s²_fake, ce, correct
  static constexpr int kCount = 6;
};

// f [nr + nf][K], real rows first; y [nr] the real rows' labels in [0, K). Writes df [nr + nf][K] = dL/df and
// adds this rank's terms to `sums`. T = double for the finite-difference checks of the same code.
template <class T>
void jem_loss_rows(const T* f, int nr, int nf, int K, const int32_t* y, int64_t n_real, int64_t n_fake,
                   const JemWeights& w, T* df, JemSums& sums) {
  const T inv_r = T(1) / T(n_real), inv_f = T(1) / T(n_fake), a = T(w.alpha), cdw = T(w.cd_weight),
          cew = T(w.ce_weight);
  for (int i = 0; i < nr + nf; ++i) {
    const bool real = i < nr;
    T ce = 0;
    int correct = 0;
    const T s = jem_row(f + int64_t(i) * K, K, real ? int(y[i]) : -1, inv_r, inv_f, a, cdw, cew, df + int64_t(i) * K,
                        &ce, &correct);
    sums.v[real ? 0 : 2] += double(s);
    sums.v[real ? 1 : 3] += double(s) * double(s);
    if (!real) continue;
    sums.v[4] += double(ce);
    sums.v[5] += correct;
  }
}

// The step's metrics from the (all-reduced) sums; max_abs_f is left to the caller (max |f| over every logit).
inline StepMetrics jem_metrics(const JemSums& sums, int64_t n_real, int64_t n_fake, const JemWeights& w) {
  StepMetrics m;
  jem_fill_metrics(sums.v, n_real, n_fake, w.alpha, w.cd_weight, w.ce_weight, m);
  return m;
}

// The Langevin chains' upstream weights for a K-output net, row by row over f [n][K]: ∂s/∂f = softmax(f) for
// the unconditional energy (y null), the one-hot of y_i for the class-conditional E(x, y_i) = −f_{y_i}(x).
// K = 1 (the energy net): 1.
template <class T>
void chain_weights(const T* f, int n, int K, const int32_t* y, T* w) {
  for (int i = 0; i < n; ++i) chain_weight_row(f + int64_t(i) * K, K, y ? int(y[i]) : -1, w + int64_t(i) * K);
}

}  // namespace ebm
