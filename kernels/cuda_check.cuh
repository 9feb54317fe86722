// Error checks for CUDA, cuDNN and cuRAND calls: each failure throws ebm::Error naming the failed
// expression, file and line (library code never exits). NVTX ranges, compiled out without EBM_NVTX.
#pragma once
#include <cuda_runtime.h>
#include <cudnn.h>
#include <curand.h>

#include <string>

#include "engine/error.hpp"

#if EBM_NVTX
#include <nvtx3/nvToolsExt.h>
#endif

#define EBM_CUDA_CHECK(expr)                                                                             \
  do {                                                                                                   \
    const cudaError_t ebm_err_ = (expr);                                                                 \
    if (ebm_err_ != cudaSuccess)                                                                         \
      ::ebm::fail_at(#expr, __FILE__, __LINE__, std::string("CUDA error: ") + cudaGetErrorString(ebm_err_)); \
  } while (0)

#define EBM_CUDNN_CHECK(expr)                                                                               \
  do {                                                                                                      \
    const cudnnStatus_t ebm_st_ = (expr);                                                                   \
    if (ebm_st_ != CUDNN_STATUS_SUCCESS)                                                                    \
      ::ebm::fail_at(#expr, __FILE__, __LINE__, std::string("cuDNN error: ") + cudnnGetErrorString(ebm_st_)); \
  } while (0)

#define EBM_CURAND_CHECK(expr)                                                                                 \
  do {                                                                                                         \
    const curandStatus_t ebm_st_ = (expr);                                                                     \
    if (ebm_st_ != CURAND_STATUS_SUCCESS)                                                                      \
      ::ebm::fail_at(#expr, __FILE__, __LINE__, "cuRAND error " + std::to_string(static_cast<int>(ebm_st_))); \
  } while (0)

// After every kernel launch: launch-configuration errors surface here, not at the next sync.
#define EBM_CUDA_LAUNCH_CHECK() EBM_CUDA_CHECK(cudaGetLastError())

namespace ebm::cuda {

// A named range for nsys/ncu timelines (data, langevin, train step, optimizer).
struct NvtxRange {
#if EBM_NVTX
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  ~NvtxRange() { nvtxRangePop(); }
#else
  explicit NvtxRange(const char*) {}
#endif
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

// Grid size for a grid-stride loop over n items: enough blocks to fill the device, no more.
inline unsigned grid_for(int64_t n, int threads, int max_blocks = 4096) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > max_blocks ? max_blocks : b));
}

}  // namespace ebm::cuda
