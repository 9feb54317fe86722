// Convolutions through cuDNN v9's legacy API (NCHW, float32): one ConvPlan per (layer, batch size) holds
// the descriptors and the algorithm of each direction, chosen once, before any graph capture, and cached
// process-wide so two backends in one process run the same algorithms (bit-identical results).
//
// Algorithm choice: deterministic algorithms only (no atomics: graph replay and eager runs must agree, and
// so must two runs with one seed); within that, cudnnFind* (timed) for the batch sizes a training step uses,
// cuDNN's heuristics (cudnnGet*_v7) for the rest, capped to the workspace already allocated (its address is
// baked into captured graphs, so it never moves). EngineOptions::deterministic (cuda.deterministic) uses
// heuristics everywhere, so every process picks the same algorithms and a resumed run repeats bit for bit. Math: TF32 tensor cores only with EngineOptions::tf32; otherwise
// CUDNN_FMA_MATH, since CUDNN_DEFAULT_MATH lets fp32 convolutions use TF32 on Ampere and later.
// Included by cuda_backend.cu only.
#pragma once
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "engine/net.hpp"
#include "engine/cuda/cuda_raii.cuh"

namespace ebm::cuda {

struct ConvAlgos {
  cudnnConvolutionFwdAlgo_t fwd;
  cudnnConvolutionBwdDataAlgo_t bwd_data;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter;
  cudnnMathType_t fwd_math, bwd_data_math, bwd_filter_math;
  size_t workspace;  // bytes: the most any of the three needs
};

// One conv layer at batch size n: x (n, cin, hin, win) → y (n, cout, hout, wout).
struct ConvPlan {
  int n = 0;
  TensorDesc x, y;
  ConvDesc fwd_conv, bwd_data_conv, bwd_filter_conv;  // each with its algorithm's math type
  ConvAlgos algos{};
};

namespace detail {

// The first deterministic, successful result that fits the workspace (results come best first); without
// TF32 also one that does not need tensor-op math (it will run with CUDNN_FMA_MATH); never one that may
// convert float32 data down to half precision.
template <class Perf>
int pick(const Perf* perf, int count, size_t ws_cap, bool tf32) {
  for (int i = 0; i < count; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC &&
        perf[i].memory <= ws_cap && perf[i].mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
        (tf32 || perf[i].mathType != CUDNN_TENSOR_OP_MATH))
      return i;
  return -1;
}

inline std::mutex& cache_mutex() {
  static std::mutex m;
  return m;
}
using CacheKey = std::array<int64_t, 12>;
inline std::map<CacheKey, ConvAlgos>& cache() {
  static std::map<CacheKey, ConvAlgos> c;
  return c;
}

[[noreturn]] inline void no_algorithm(const char* dir, const ConvShape& s, int n, size_t ws_cap) {
  fail_at("pick(...) >= 0", __FILE__, __LINE__,
          std::string("cuDNN offers no deterministic ") + dir + " algorithm for conv " + std::to_string(s.cin) + "->" +
              std::to_string(s.cout) + " at batch " + std::to_string(n) + " within a " +
              std::to_string(ws_cap >> 20) + " MiB workspace");
}

}  // namespace detail

// Descriptors and algorithms for layer `s` at batch n. `timed`: measure with cudnnFind* (else heuristics).
// ws_cap: the largest workspace an algorithm may need.
inline ConvPlan make_conv_plan(cudnnHandle_t h, const ConvShape& s, cudnnFilterDescriptor_t w, int n, bool tf32,
                               bool timed, size_t ws_cap, int device) {
  ConvPlan p;
  p.n = n;
  p.x = make_tensor_desc(n, s.cin, s.hin, s.win);
  p.y = make_tensor_desc(n, s.cout, s.hout, s.wout);
  const cudnnMathType_t search_math = tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;  // DEFAULT permits TF32, as PyTorch does
  p.fwd_conv = make_conv_desc(s.pad, s.stride, search_math);
  p.bwd_data_conv = make_conv_desc(s.pad, s.stride, search_math);
  p.bwd_filter_conv = make_conv_desc(s.pad, s.stride, search_math);

  int on, oc, oh, ow;  // cuDNN's output size must be the one engine/net.cpp computed
  EBM_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p.fwd_conv.get(), p.x.get(), w, &on, &oc, &oh, &ow));
  EBM_CHECK(on == n && oc == s.cout && oh == s.hout && ow == s.wout, "cuDNN's conv output shape differs from the net's");

  const detail::CacheKey key{device, s.cin, s.cout, s.k, s.stride, s.pad, s.hin, s.win, n, tf32, timed,
                             static_cast<int64_t>(ws_cap)};
  std::lock_guard<std::mutex> lock(detail::cache_mutex());
  auto it = detail::cache().find(key);
  if (it == detail::cache().end()) {
    ConvAlgos a{};
    {
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      int count = 0;
      if (timed)
        EBM_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(h, p.x.get(), w, p.fwd_conv.get(), p.y.get(),
                                                             CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf));
      else
        EBM_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x.get(), w, p.fwd_conv.get(), p.y.get(),
                                                               CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf));
      const int i = detail::pick(perf, count, ws_cap, tf32);
      if (i < 0) detail::no_algorithm("forward", s, n, ws_cap);
      a.fwd = perf[i].algo;
      a.fwd_math = tf32 ? perf[i].mathType : CUDNN_FMA_MATH;
    }
    {
      cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      int count = 0;
      if (timed)
        EBM_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(h, w, p.y.get(), p.bwd_data_conv.get(), p.x.get(),
                                                                  CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf));
      else
        EBM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, w, p.y.get(), p.bwd_data_conv.get(), p.x.get(),
                                                                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count,
                                                                    perf));
      const int i = detail::pick(perf, count, ws_cap, tf32);
      if (i < 0) detail::no_algorithm("backward-data", s, n, ws_cap);
      a.bwd_data = perf[i].algo;
      a.bwd_data_math = tf32 ? perf[i].mathType : CUDNN_FMA_MATH;
    }
    {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      int count = 0;
      if (timed)
        EBM_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(h, p.x.get(), p.y.get(), p.bwd_filter_conv.get(), w,
                                                                    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count,
                                                                    perf));
      else
        EBM_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x.get(), p.y.get(), p.bwd_filter_conv.get(),
                                                                      w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                                                                      &count, perf));
      const int i = detail::pick(perf, count, ws_cap, tf32);
      if (i < 0) detail::no_algorithm("backward-filter", s, n, ws_cap);
      a.bwd_filter = perf[i].algo;
      a.bwd_filter_math = tf32 ? perf[i].mathType : CUDNN_FMA_MATH;
    }
    it = detail::cache().emplace(key, a).first;
  }
  p.algos = it->second;

  // Each direction runs with its algorithm's math type; the workspace sizes are re-queried under it.
  EBM_CUDNN_CHECK(cudnnSetConvolutionMathType(p.fwd_conv.get(), p.algos.fwd_math));
  EBM_CUDNN_CHECK(cudnnSetConvolutionMathType(p.bwd_data_conv.get(), p.algos.bwd_data_math));
  EBM_CUDNN_CHECK(cudnnSetConvolutionMathType(p.bwd_filter_conv.get(), p.algos.bwd_filter_math));
  size_t ws_f = 0, ws_d = 0, ws_w = 0;
  EBM_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, p.x.get(), w, p.fwd_conv.get(), p.y.get(), p.algos.fwd,
                                                          &ws_f));
  EBM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, w, p.y.get(), p.bwd_data_conv.get(), p.x.get(),
                                                               p.algos.bwd_data, &ws_d));
  EBM_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x.get(), p.y.get(), p.bwd_filter_conv.get(), w,
                                                                 p.algos.bwd_filter, &ws_w));
  p.algos.workspace = std::max({ws_f, ws_d, ws_w});
  return p;
}

struct Workspace {
  void* ptr;
  size_t bytes;
};

// y (n, cout, hout, wout) = conv(x (n, cin, hin, win), w)
inline void conv_forward(cudnnHandle_t h, const ConvPlan& p, cudnnFilterDescriptor_t wd, const float* x,
                         const float* w, float* y, Workspace ws) {
  const float one = 1.0f, zero = 0.0f;
  EBM_CUDNN_CHECK(cudnnConvolutionForward(h, &one, p.x.get(), x, wd, w, p.fwd_conv.get(), p.algos.fwd, ws.ptr,
                                          ws.bytes, &zero, p.y.get(), y));
}

// dx (n, cin, hin, win) = ∂/∂x of Σ dy ⊙ conv(x, w)   (overwrites dx)
inline void conv_backward_data(cudnnHandle_t h, const ConvPlan& p, cudnnFilterDescriptor_t wd, const float* w,
                               const float* dy, float* dx, Workspace ws) {
  const float one = 1.0f, zero = 0.0f;
  EBM_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, wd, w, p.y.get(), dy, p.bwd_data_conv.get(), p.algos.bwd_data,
                                               ws.ptr, ws.bytes, &zero, p.x.get(), dx));
}

// dw (cout, cin, k, k) = ∂/∂w of Σ dy ⊙ conv(x, w)   (overwrites dw, summed over the batch)
inline void conv_backward_filter(cudnnHandle_t h, const ConvPlan& p, cudnnFilterDescriptor_t wd, const float* x,
                                 const float* dy, float* dw, Workspace ws) {
  const float one = 1.0f, zero = 0.0f;
  EBM_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, p.x.get(), x, p.y.get(), dy, p.bwd_filter_conv.get(),
                                                 p.algos.bwd_filter, ws.ptr, ws.bytes, &zero, wd, dw));
}

}  // namespace ebm::cuda
