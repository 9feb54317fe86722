// The energy network on the GPU, beside CpuNet (engine/cpu/cpu_net.hpp) under the same method names:
// cuDNN convolutions (engine/cuda/cudnn_conv.cuh) with fused bias+swish (kernels/swish.cuh) and the dense head
// (kernels/dense.cuh); the two backward passes the method needs (w.r.t. the input for Langevin, w.r.t. the
// parameters for Adam). Layout NCHW; per layer z (with bias, for swish') and a = swish(z), for rows() images.
// Every call is enqueued on the net's stream: nothing here synchronises, so it can be captured in a graph.
#pragma once
#include <cudnn.h>

#include <map>
#include <vector>

#include "engine/cuda/cuda_raii.cuh"
#include "engine/cuda/cudnn_conv.cuh"
#include "engine/net.hpp"

namespace ebm::cuda {

struct CudaNetOptions {
  bool tf32 = false;          // TF32 tensor cores in the convolutions
  bool deterministic = true;  // algorithms by cuDNN's heuristics (every process alike), else timed
  int device = 0;
};

class CudaNet {
 public:
  // Chooses the algorithms for the batch sizes in `planned` (timed unless deterministic) and allocates the
  // one cuDNN workspace they need; other sizes get heuristic algorithms within it, on first use.
  CudaNet(const NetSpec& net, cudnnHandle_t cudnn, cudaStream_t stream, const CudaNetOptions& opt,
          const std::vector<int>& planned);
  const NetSpec& spec() const { return net_; }

  // Activation buffers for n rows. Returns whether they moved (graphs that captured them are stale).
  bool reserve_rows(int n);
  int rows() const { return rows_; }
  // Algorithms for batch n, chosen now (never during a graph capture).
  void plan_for(int n);

  // f [n, K] (K = spec().outputs) = f(x) for x [n, in_c, H, W], params [num_params] (device). Keeps what
  // backward() needs. f null: stops before the dense head (the Langevin chain only needs the input gradient).
  void forward(const float* params, const float* x, int n, float* f);
  // After forward(): the dense head's input (n, D), the last conv activation (NCHW = the flattened order).
  const float* features() const { return layers_.back().a.get(); }
  // After forward(): with upstream weights df [n, K] (dL/df_ik), writes
  //   dx   [n, in_c, H, W] = dL/dx   (skipped when null)
  //   grad [num_params]    = dL/dθ   (skipped when null; overwritten, not accumulated)
  void backward(const float* params, const float* df, float* dx, float* grad);

 private:
  struct Layer {
    ConvShape s;
    FilterDesc w;
    DeviceBuffer<float> z, a;  // (rows_, cout, hout, wout)
  };
  const ConvPlan& plan(size_t layer, int n);
  Workspace workspace() const { return {ws_.get(), ws_.bytes()}; }

  NetSpec net_;
  cudnnHandle_t cudnn_;
  cudaStream_t stream_;
  CudaNetOptions opt_;
  std::vector<Layer> layers_;
  std::map<int, std::vector<ConvPlan>> plans_;  // by batch size
  DeviceBuffer<unsigned char> ws_;               // the one cuDNN workspace; never moves once allocated
  int rows_ = 0;
  DeviceBuffer<float> da_[2];    // (rows_, largest layer): gradient ping-pong
  DeviceBuffer<float> partial_;  // bias-gradient partial sums
  const float* fwd_input_ = nullptr;  // what the last forward() read, for backward()
  int fwd_n_ = 0;
};

}  // namespace ebm::cuda
