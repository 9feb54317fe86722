// Whether the current device can run this build's kernels (SASS for its architecture, or PTX it can compile).
#pragma once
#include <cuda_runtime.h>

namespace ebm::cuda {

// cudaSuccess when it can; otherwise the error cudaFuncGetAttributes gives for an empty kernel
// (e.g. cudaErrorNoKernelImageForDevice).
[[nodiscard]] cudaError_t probe_device();

}  // namespace ebm::cuda
