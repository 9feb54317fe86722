#include "engine/cuda/cuda_net.cuh"

#include <algorithm>
#include <utility>

#include "engine/cuda/cuda_check.cuh"
#include "engine/error.hpp"
#include "kernels/dense.cuh"
#include "kernels/swish.cuh"

namespace ebm::cuda {
namespace {

constexpr size_t kSearchWorkspaceCap = size_t(256) << 20;  // the most workspace a timed algorithm may take
constexpr size_t kMinWorkspace = size_t(16) << 20;         // headroom for batch sizes planned later

}  // namespace

CudaNet::CudaNet(const NetSpec& net, cudnnHandle_t cudnn, cudaStream_t stream, const CudaNetOptions& opt,
                 const std::vector<int>& planned)
    : net_(net), cudnn_(cudnn), stream_(stream), opt_(opt) {
  EBM_CHECK(!net_.convs.empty() && net_.num_params > 0, "cuda backend: the network has no layers");
  for (const ConvShape& s : net_.convs) layers_.push_back({s, make_filter_desc(s.cout, s.cin, s.k, s.k), {}, {}});
  size_t need = kMinWorkspace;
  for (int n : planned) {
    std::vector<ConvPlan> v;
    for (const Layer& L : layers_) {
      v.push_back(make_conv_plan(cudnn_, L.s, L.w.get(), n, opt_.tf32, !opt_.deterministic, kSearchWorkspaceCap,
                                 opt_.device));
      need = std::max(need, v.back().algos.workspace);
    }
    plans_.emplace(n, std::move(v));
  }
  ws_.resize(need);
}

const ConvPlan& CudaNet::plan(size_t layer, int n) {
  auto it = plans_.find(n);
  if (it == plans_.end()) {
    cudaStreamCaptureStatus cs;
    EBM_CUDA_CHECK(cudaStreamIsCapturing(stream_, &cs));
    EBM_CHECK(cs == cudaStreamCaptureStatusNone, "cuDNN plan for a new batch size requested during graph capture");
    std::vector<ConvPlan> v;
    for (const Layer& L : layers_) {
      v.push_back(make_conv_plan(cudnn_, L.s, L.w.get(), n, opt_.tf32, false, ws_.bytes(), opt_.device));
      EBM_CHECK(v.back().algos.workspace <= ws_.bytes(), "cuDNN algorithm needs more than the allocated workspace");
    }
    it = plans_.emplace(n, std::move(v)).first;
  }
  return it->second[layer];
}

void CudaNet::plan_for(int n) {
  for (size_t l = 0; l < layers_.size(); ++l) plan(l, n);
}

bool CudaNet::reserve_rows(int n) {
  if (n <= rows_) return false;
  rows_ = n;
  int64_t largest = net_.image_size(), part = 0;
  for (Layer& L : layers_) {
    const int64_t per_row = int64_t(L.s.cout) * L.s.hout * L.s.wout;
    L.z.resize(size_t(n * per_row));
    L.a.resize(size_t(n * per_row));
    largest = std::max(largest, per_row);
    part = std::max(part, int64_t(L.s.cout) * swish_backward_blocks(n, L.s.hout * L.s.wout));
  }
  for (auto& d : da_) d.resize(size_t(n * largest));
  partial_.resize(size_t(part));
  return true;
}

void CudaNet::forward(const float* params, const float* x, int n, float* f) {
  EBM_CHECK(n > 0 && n <= rows_, "forward(): batch larger than the activation buffers");
  const float* in = x;
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    const ConvShape& s = L.s;
    // z (n, cout, hout, wout) = conv(in (n, cin, hin, win)); then z += b, a = swish(z)
    conv_forward(cudnn_, plan(l, n), L.w.get(), in, params + s.w_off, L.z.get(), workspace());
    EBM_CUDA_CHECK(bias_swish_forward(L.z.get(), L.a.get(), params + s.b_off, n, s.cout, s.hout * s.wout, stream_));
    in = L.a.get();
  }
  fwd_input_ = x;
  fwd_n_ = n;
  if (f)
    EBM_CUDA_CHECK(dense_forward(in, params + net_.dense_w_off, params + net_.dense_b_off, f, n, int(net_.dense_in),
                                 net_.outputs, stream_));
}

void CudaNet::backward(const float* params, const float* df, float* dx, float* grad) {
  EBM_CHECK(fwd_input_ != nullptr && fwd_n_ > 0, "backward() without its forward()");
  const int n = fwd_n_;
  if (grad)
    EBM_CUDA_CHECK(dense_backward(layers_.back().a.get(), df, grad + net_.dense_w_off, grad + net_.dense_b_off, n,
                                  int(net_.dense_in), net_.outputs, stream_));
  float* cur = da_[0].get();  // holds da of layer l on entry, dz of layer l after swish_backward
  float* other = da_[1].get();
  for (size_t l = layers_.size(); l-- > 0;) {
    const Layer& L = layers_[l];
    const ConvShape& s = L.s;
    const ConvPlan& p = plan(l, n);
    SwishUpstream up;
    if (l + 1 == layers_.size()) {  // the dense head's input gradient, formed inside the kernel
      up.df = df;
      up.wd = params + net_.dense_w_off;
      up.K = net_.outputs;
    } else {
      up.da = cur;
    }
    EBM_CUDA_CHECK(swish_backward(up, L.z.get(), cur, partial_.get(), grad ? grad + s.b_off : nullptr, n, s.cout,
                                  s.hout * s.wout, stream_));
    const float* in = l > 0 ? layers_[l - 1].a.get() : fwd_input_;
    if (grad) conv_backward_filter(cudnn_, p, L.w.get(), in, cur, grad + s.w_off, workspace());
    if (l == 0 && !dx) break;
    conv_backward_data(cudnn_, p, L.w.get(), params + s.w_off, cur, l > 0 ? other : dx, workspace());
    std::swap(cur, other);
  }
}

}  // namespace ebm::cuda
