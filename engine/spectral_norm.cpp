#include "engine/spectral_norm.hpp"

#include <algorithm>
#include <cmath>

#include "engine/rng.hpp"
#include "kernels/ebm_math.hpp"

namespace ebm {

std::vector<SnLayer> sn_layers(const NetSpec& net) {
  std::vector<SnLayer> layers;
  int64_t u = 0;
  for (const ConvShape& c : net.convs) {
    layers.push_back({c.w_off, c.cout, c.cin * c.k * c.k, u});
    u += c.cout;
  }
  layers.push_back({net.dense_w_off, net.outputs, int(net.dense_in), u});  // dense.weight [K, D]
  return layers;
}

int64_t sn_state_size(const NetSpec& net) {
  int64_t n = 0;
  for (const SnLayer& l : sn_layers(net)) n += l.rows;
  return n;
}

int64_t sn_v_size(const NetSpec& net) {
  int64_t n = 0;
  for (const SnLayer& l : sn_layers(net)) n += l.cols;
  return n;
}

std::vector<float> sn_initial_state(const NetSpec& net, uint64_t seed) {
  std::vector<float> u(size_t(sn_state_size(net)));
  Rng(seed, RngStream::kSpectralNorm).normal(u.data(), int64_t(u.size()), 0.0f, 1.0f);
  for (const SnLayer& l : sn_layers(net)) {
    float* x = u.data() + l.u_off;
    double ss = 0;
    for (int i = 0; i < l.rows; ++i) ss += double(x[i]) * x[i];
    const double inv = sn_inv_norm(ss);
    for (int i = 0; i < l.rows; ++i) x[i] = float(x[i] * inv);
  }
  return u;
}

template <class T>
T sn_layer_forward(const T* w, int rows, int cols, const T* u, T* u_out, T* v, T* w_sn) {
  // v = normalize(Wᵀu)
  std::vector<double> acc(size_t(cols), 0.0);
  for (int i = 0; i < rows; ++i) {
    const double ui = double(u[i]);
    const T* wi = w + int64_t(i) * cols;
    for (int j = 0; j < cols; ++j) acc[size_t(j)] += double(wi[j]) * ui;
  }
  double ss = 0;
  for (int j = 0; j < cols; ++j) {
    v[j] = T(acc[size_t(j)]);
    ss += double(v[j]) * double(v[j]);
  }
  double inv = sn_inv_norm(ss);
  for (int j = 0; j < cols; ++j) v[j] = T(double(v[j]) * inv);
  // u' = normalize(W v), σ = u'ᵀ (W v)
  std::vector<T> wv(static_cast<size_t>(rows));
  ss = 0;
  for (int i = 0; i < rows; ++i) {
    const T* wi = w + int64_t(i) * cols;
    double d = 0;
    for (int j = 0; j < cols; ++j) d += double(wi[j]) * double(v[j]);
    wv[size_t(i)] = T(d);
    ss += double(wv[size_t(i)]) * double(wv[size_t(i)]);
  }
  inv = sn_inv_norm(ss);
  double sigma = 0;
  for (int i = 0; i < rows; ++i) {
    u_out[i] = T(double(wv[size_t(i)]) * inv);
    sigma += double(u_out[i]) * double(wv[size_t(i)]);
  }
  const T s = T(sigma);
  for (int64_t e = 0; e < int64_t(rows) * cols; ++e) w_sn[e] = w[e] / s;
  return s;
}

template <class T>
void sn_layer_backward(T* g, const T* w_sn, int rows, int cols, const T* u, const T* v, T sigma) {
  const int64_t n = int64_t(rows) * cols;
  double dot = 0;  // ⟨G, W_sn⟩
  for (int64_t e = 0; e < n; ++e) dot += double(g[e]) * double(w_sn[e]);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      T& ge = g[int64_t(i) * cols + j];
      if constexpr (sizeof(T) == sizeof(float)) {
        ge = sn_grad(ge, dot, u[i], v[j], sigma);
      } else {
        ge = (ge - T(dot) * u[i] * v[j]) / sigma;
      }
    }
}

template float sn_layer_forward<float>(const float*, int, int, const float*, float*, float*, float*);
template double sn_layer_forward<double>(const double*, int, int, const double*, double*, double*, double*);
template void sn_layer_backward<float>(float*, const float*, int, int, const float*, const float*, float);
template void sn_layer_backward<double>(double*, const double*, int, int, const double*, const double*, double);

void sn_apply(const NetSpec& net, const float* theta, float* u, bool update_u, float* out, float* sigma, float* v) {
  std::copy(theta, theta + net.num_params, out);  // biases as they are
  const std::vector<SnLayer> layers = sn_layers(net);
  std::vector<float> u_new, v_scratch;
  int64_t v_off = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    const SnLayer& L = layers[l];
    u_new.resize(size_t(L.rows));
    float* vl = v ? v + v_off : (v_scratch.resize(size_t(L.cols)), v_scratch.data());
    const float s = sn_layer_forward(theta + L.w_off, L.rows, L.cols, u + L.u_off, u_new.data(), vl, out + L.w_off);
    if (update_u) std::copy(u_new.begin(), u_new.end(), u + L.u_off);
    if (sigma) sigma[l] = s;
    v_off += L.cols;
  }
}

void sn_backward(const NetSpec& net, float* grad, const float* w_sn, const float* u, const float* sigma,
                 const float* v) {
  const std::vector<SnLayer> layers = sn_layers(net);
  int64_t v_off = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    const SnLayer& L = layers[l];
    sn_layer_backward(grad + L.w_off, w_sn + L.w_off, L.rows, L.cols, u + L.u_off, v + v_off, sigma[l]);
    v_off += L.cols;
  }
}

}  // namespace ebm
