// Owners for device memory, streams, cuDNN handles/descriptors and CUDA graphs.
// Move-only; destructors never throw (a failed free at process teardown is not worth an abort).
#pragma once
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstddef>
#include <functional>
#include <utility>

#include "engine/cuda/cuda_check.cuh"

namespace ebm::cuda {

// A typed device allocation. resize() discards the contents (it is only called outside graphs).
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { resize(n); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void resize(size_t n) {
    if (n == n_) return;
    release();
    if (n > 0) EBM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)));
    n_ = n;
  }
  // Grows to at least n; returns whether the allocation moved (what captured graphs care about).
  bool reserve(size_t n) {
    if (n <= n_) return false;
    resize(n);
    return true;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }

 private:
  void release() noexcept {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

// A generic owner of an opaque handle with a C destroy function.
template <class H, class Destroy>
class Handle {
 public:
  Handle() = default;
  explicit Handle(H h) : h_(h), live_(true) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : h_(o.h_), live_(std::exchange(o.live_, false)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = o.h_;
      live_ = std::exchange(o.live_, false);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  H get() const { return h_; }
  explicit operator bool() const { return live_; }
  void reset() noexcept {
    if (live_) Destroy{}(h_);
    live_ = false;
  }

 private:
  H h_{};
  bool live_ = false;
};

struct StreamDestroy { void operator()(cudaStream_t s) const noexcept { cudaStreamDestroy(s); } };
struct EventDestroy { void operator()(cudaEvent_t e) const noexcept { cudaEventDestroy(e); } };
struct GraphExecDestroy { void operator()(cudaGraphExec_t g) const noexcept { cudaGraphExecDestroy(g); } };
struct CudnnDestroy { void operator()(cudnnHandle_t h) const noexcept { cudnnDestroy(h); } };
struct TensorDescDestroy { void operator()(cudnnTensorDescriptor_t d) const noexcept { cudnnDestroyTensorDescriptor(d); } };
struct FilterDescDestroy { void operator()(cudnnFilterDescriptor_t d) const noexcept { cudnnDestroyFilterDescriptor(d); } };
struct ConvDescDestroy { void operator()(cudnnConvolutionDescriptor_t d) const noexcept { cudnnDestroyConvolutionDescriptor(d); } };

using Stream = Handle<cudaStream_t, StreamDestroy>;
using Event = Handle<cudaEvent_t, EventDestroy>;
using GraphExec = Handle<cudaGraphExec_t, GraphExecDestroy>;
using CudnnHandle = Handle<cudnnHandle_t, CudnnDestroy>;
using TensorDesc = Handle<cudnnTensorDescriptor_t, TensorDescDestroy>;
using FilterDesc = Handle<cudnnFilterDescriptor_t, FilterDescDestroy>;
using ConvDesc = Handle<cudnnConvolutionDescriptor_t, ConvDescDestroy>;

inline Stream make_stream() {
  cudaStream_t s;
  EBM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return Stream(s);
}

inline Event make_event() {
  cudaEvent_t e;
  EBM_CUDA_CHECK(cudaEventCreate(&e));
  return Event(e);
}

// NCHW float32 tensor descriptor.
inline TensorDesc make_tensor_desc(int n, int c, int h, int w) {
  cudnnTensorDescriptor_t d;
  EBM_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
  TensorDesc owned(d);
  EBM_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w));
  return owned;
}

// Conv weights [cout, cin, k, k], float32.
inline FilterDesc make_filter_desc(int cout, int cin, int kh, int kw) {
  cudnnFilterDescriptor_t d;
  EBM_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
  FilterDesc owned(d);
  EBM_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, cout, cin, kh, kw));
  return owned;
}

// Cross-correlation (no kernel flip: PyTorch's and the CPU backend's convention), fp32 accumulation.
inline ConvDesc make_conv_desc(int pad, int stride, cudnnMathType_t math) {
  cudnnConvolutionDescriptor_t d;
  EBM_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
  ConvDesc owned(d);
  EBM_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                  CUDNN_DATA_FLOAT));
  EBM_CUDNN_CHECK(cudnnSetConvolutionMathType(d, math));
  return owned;
}

// Records `enqueue` (stream work only: no allocation, sync or host read) into an executable graph.
// On failure capture is ended, so the stream is usable again, before the error propagates.
inline GraphExec capture_graph(cudaStream_t stream, const std::function<void()>& enqueue) {
  EBM_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t graph = nullptr;
  try {
    enqueue();
  } catch (...) {
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();  // the capture may have been invalidated; clear the sticky launch error
    throw;
  }
  EBM_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  EBM_CUDA_CHECK(err);
  return GraphExec(exec);
}

}  // namespace ebm::cuda
