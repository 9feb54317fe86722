// The contrastive-divergence loss of one step (DESIGN §1), its metrics and dL/df per row.
//   cdiv = mean f(fake) − mean f(real);  reg = α·(mean f(real)² + mean f(fake)²);  loss = cdiv + reg
#pragma once
#include <algorithm>
#include <cmath>

#include "engine/backend.hpp"
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

}  // namespace ebm
