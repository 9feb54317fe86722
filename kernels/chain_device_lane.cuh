// DeviceLane: kernels/chain_lane.hpp's Lane on the GPU — each call is the instruction it names, inlined away (the
// `line` arguments only name instructions for the CPU recorder). sm_90: mbarrier try_wait.parity, cp.async.bulk.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/chain_lane.hpp"  // F4

namespace ebm::cuda {

struct DeviceLane {
  static __device__ __forceinline__ uint32_t saddr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
  }

  __device__ __forceinline__ int tid() const { return int(threadIdx.x); }
  __device__ __forceinline__ int nthreads() const { return int(blockDim.x); }

  __device__ __forceinline__ float lds(const float* p, int = 0) { return *p; }
  __device__ __forceinline__ float lds_if(bool pred, const float* p, int = 0) {
    const float v = *p;
    return pred ? v : 0.0f;
  }
  __device__ __forceinline__ F4 lds4(const float* p, int = 0) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    return {v.x, v.y, v.z, v.w};
  }
  __device__ __forceinline__ void sts(float* p, float v, int = 0) { *p = v; }
  __device__ __forceinline__ void sts4(float* p, F4 v, int = 0) {
    *reinterpret_cast<float4*>(p) = make_float4(v.x, v.y, v.z, v.w);
  }
  __device__ __forceinline__ float ldg(const float* p, int = 0) { return __ldg(p); }
  __device__ __forceinline__ float ld(const float* p, int = 0) { return *p; }
  __device__ __forceinline__ F4 ldg4(const float* p, int = 0) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(p));
    return {v.x, v.y, v.z, v.w};
  }
  __device__ __forceinline__ void stg(float* p, float v, int = 0) { *p = v; }
  __device__ __forceinline__ float fma(float a, float b, float c, int = 0) { return fmaf(a, b, c); }

  __device__ __forceinline__ void shfl_xor_n(float* v, int n, int mask, int = 0) {
#pragma unroll
    for (int i = 0; i < n; ++i) v[i] = __shfl_xor_sync(0xffffffffu, v[i], mask);
  }
  __device__ __forceinline__ void syncwarp(int = 0) { __syncwarp(); }
  __device__ __forceinline__ void sync(int = 0) { __syncthreads(); }
  __device__ __forceinline__ void phase(int) {}
  __device__ __forceinline__ void key(int) {}

  // sm_90: mbarrier try_wait.parity and cp.async.bulk (the engine runs the tiled chain on compute capability 9.0+
  // only; a build for older architectures compiles these to a trap).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define EBM_SM90_ONLY(...) __trap()
#else
#define EBM_SM90_ONLY(...) __VA_ARGS__
#endif
  __device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
    EBM_SM90_ONLY(asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(saddr(bar)), "r"(count) : "memory"));
  }
  // Makes the initialised barriers visible to the bulk-copy (async) proxy; a __syncthreads follows before any use.
  __device__ __forceinline__ void mbar_fence_init() {
    EBM_SM90_ONLY(asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"));
    EBM_SM90_ONLY(asm volatile("fence.proxy.async.shared::cta;" ::: "memory"));
  }
  // Orders this thread's (and, after the mbarrier wait it follows, every releasing warp's) generic-proxy accesses to
  // shared memory before a following bulk copy's async-proxy write (PTX ISA: a cross-proxy fence).
  __device__ __forceinline__ void fence_proxy_async() {
    EBM_SM90_ONLY(asm volatile("fence.proxy.async.shared::cta;" ::: "memory"));
  }
  __device__ __forceinline__ void mbar_arrive(uint64_t* bar, int = 0) {
    EBM_SM90_ONLY(asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(saddr(bar)) : "memory"));
  }
  __device__ __forceinline__ void mbar_arrive_tx(uint64_t* bar, uint32_t bytes, int = 0) {
    EBM_SM90_ONLY(
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(saddr(bar)), "r"(bytes) : "memory"));
  }
  __device__ __forceinline__ void mbar_wait(uint64_t* bar, int parity, int = 0) {
    uint32_t done = 0;
    do {
      EBM_SM90_ONLY(asm volatile(
          "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
          : "=r"(done)
          : "r"(saddr(bar)), "r"(parity)
          : "memory"));
    } while (!done);
  }
  __device__ __forceinline__ void bulk_g2s(float* dst, const float* src, uint32_t bytes, uint64_t* bar, int = 0) {
    EBM_SM90_ONLY(asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(saddr(dst)),
        "l"(src), "r"(bytes), "r"(saddr(bar))
        : "memory"));
  }

  static __device__ __forceinline__ uint32_t tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
  }
  __device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], int = 0) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

}  // namespace ebm::cuda
