// HOST_DEVICE: per-element math written once for the CPU backend and the CUDA kernels.
#pragma once
#if defined(__CUDACC__)
#define EBM_HD __host__ __device__ __forceinline__
#else
#define EBM_HD inline
#endif

// EBM_UNROLL before a loop of a compile-time trip count: unrolled on both compilers, so register arrays indexed by
// its counter stay in registers on the GPU.
#if defined(__CUDA_ARCH__)
#define EBM_UNROLL _Pragma("unroll")
#elif defined(__CUDACC__)  // nvcc's host pass: its front end knows neither form
#define EBM_UNROLL
#else
#define EBM_UNROLL _Pragma("GCC unroll 16")
#endif
// EBM_NO_UNROLL: keep a loop rolled (its body is large; unrolled, the compiler would hoist loads of several
// iterations and run out of registers).
#if defined(__CUDA_ARCH__)
#define EBM_NO_UNROLL _Pragma("unroll 1")
#else
#define EBM_NO_UNROLL
#endif
