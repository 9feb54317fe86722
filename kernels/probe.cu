// Kernel of probe.cuh.
#include "kernels/probe.cuh"

namespace ebm::cuda {
namespace {

__global__ void probe_kernel() {}

}  // namespace

cudaError_t probe_device() {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(&attr, probe_kernel);
}

}  // namespace ebm::cuda
