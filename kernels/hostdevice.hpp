// HOST_DEVICE: per-element math written once for the CPU backend and the CUDA kernels.
#pragma once
#if defined(__CUDACC__)
#define EBM_HD __host__ __device__ __forceinline__
#else
#define EBM_HD inline
#endif
