// Error checks for CUDA and cuDNN calls: each failure throws ebm::Error naming the failed
// expression, file and line (library code never exits). NVTX ranges, compiled out without EBM_NVTX.
#pragma once
#include <cuda_runtime.h>
#include <cudnn.h>

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

}  // namespace ebm::cuda
