// Warp and block reductions on the device, in fixed order, so results are deterministic run to run and
// identical between graph replay and eager launches. Device helpers for the kernels' .cu files.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>


namespace ebm::cuda {

struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};

template <class T, class Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide reduction; the result is valid in thread 0. blockDim.x must be a multiple of 32.
// Safe to call several times in one kernel (the leading barrier protects the scratch).
template <class T, class Op>
__device__ T block_reduce(T v, Op op, T identity) {
  __shared__ T part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_reduce(v, op);
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : identity;
  if (warp == 0) v = warp_reduce(v, op);
  return v;
}

}  // namespace ebm::cuda
