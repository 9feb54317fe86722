// The interface between the tiled Langevin chain's per-thread code (kernels/langevin_chain_tiled.hpp) and what runs
// it. The chain's code never touches memory, a warp or a barrier directly: it goes through a Lane, one thread's view
// of its block. Two Lanes exist:
//   DeviceLane (kernels/chain_device_lane.cuh)  the GPU: each call is the one instruction it names (ld.shared,
//                                               ld.global.nc, fmaf, shfl.sync, bar.sync, mbarrier, cp.async.bulk,
//                                               mma.sync), inlined away;
//   SimLane    (tests/block_sim.hpp)            the CPU: every thread of a block as a fiber, barriers, warp shuffles,
//                                               mbarriers and bulk copies emulated, and every access recorded so that
//                                               tests can measure what decides GPU speed (SIMT efficiency, shared-
//                                               memory wavefronts, sectors, multiply-adds per thread) from the real
//                                               kernel code.
//
// What a Lane provides (all inline; `line` defaults to the caller's source line and names the instruction for the
// recorder — lanes of a warp that reach the same line for the same time execute one warp instruction):
//   tid(), nthreads()                      this thread, the block's size
//   lds(p), lds_if(pred, p), lds4(p)       shared loads (lds_if: pred ? *p : 0, one predicated load: p must be a valid
//                                          address either way); lds4 reads 16 aligned bytes
//   sts(p, v)                              shared store
//   ldg(p), ldg4(p), stg(p, v)             global loads through the read-only path, global store
//   ld(p)                                  a global load of data the kernel also writes (not the read-only path)
//   fma(a, b, c)                           a·b + c rounded once (fmaf); one multiply-add of the phase's count
//   shfl_xor_n(v, n, mask)                 v[i] ← v[i] of lane (lane ^ mask), i < n, the whole warp at once
//   syncwarp(), sync()                     __syncwarp(), __syncthreads()
//   mbar_init/arrive/arrive_tx/wait        an mbarrier in shared memory (8 bytes, 8-aligned): init with a count,
//                                          arrive, arrive + expect_tx bytes, wait for the phase of a parity
//   fence_proxy_async()                    generic-proxy shared accesses before a following bulk copy's writes
//   bulk_g2s(dst, src, bytes, mbar)        cp.async.bulk global → shared, completing `bytes` of tx on mbar
//   tf32(x), mma_tf32(d, a, b)             cvt.rna.tf32.f32; mma.sync.m16n8k8 TF32, D += A·B in fp32 (fragments as the
//                                          PTX ISA lays them out, §9.7.14.5.7)
//   phase(id), key(k)                      for the recorder only (no code on the GPU): the start of a phase; the
//                                          iteration of a loop some lanes skip (the warp runs the union of the keys
//                                          its lanes reach: code with lane-dependent branches names them, -1 = none)
// HostLane (below) is the plain one for code run one thread at a time on the CPU: direct accesses, nothing recorded.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/hostdevice.hpp"

namespace ebm {

// Four floats read or written as one 16-byte access (CUDA's float4, without the CUDA headers).
struct alignas(16) F4 {
  float x, y, z, w;
  EBM_HD float operator[](int i) const { return i == 0 ? x : i == 1 ? y : i == 2 ? z : w; }
};

// cvt.rna.tf32.f32 (PTX ISA: round to nearest, ties away from zero, keeping 10 of the 23 mantissa bits), as a float
// whose low 13 bits are zero. NaN and infinity pass through. The CPU's emulation of what the tensor cores read.
EBM_HD uint32_t tf32_bits_rna(uint32_t u) {
  if ((u & 0x7f800000u) == 0x7f800000u) return u;  // inf / NaN
  return (u + 0x1000u) & 0xffffe000u;              // add half an ulp of the 10-bit mantissa, cut (ties away)
}

// The Lane of code run one thread at a time on the CPU (tests/test_langevin_chain_harness.cpp): direct accesses;
// no warp or block operations (a caller that runs threads one after another has no other thread to meet).
struct HostLane {
  int t = 0, n = 1;
  EBM_HD int tid() const { return t; }
  EBM_HD int nthreads() const { return n; }
  EBM_HD float lds(const float* p, int = 0) { return *p; }
  EBM_HD float lds_if(bool pred, const float* p, int = 0) { return pred ? *p : 0.0f; }
  EBM_HD F4 lds4(const float* p, int = 0) { return {p[0], p[1], p[2], p[3]}; }
  EBM_HD void sts(float* p, float v, int = 0) { *p = v; }
  EBM_HD void sts4(float* p, F4 v, int = 0) { p[0] = v.x, p[1] = v.y, p[2] = v.z, p[3] = v.w; }
  EBM_HD float ldg(const float* p, int = 0) { return *p; }
  EBM_HD float ld(const float* p, int = 0) { return *p; }
  EBM_HD F4 ldg4(const float* p, int = 0) { return {p[0], p[1], p[2], p[3]}; }
  EBM_HD void stg(float* p, float v, int = 0) { *p = v; }
  EBM_HD float fma(float a, float b, float c, int = 0) { return fmaf(a, b, c); }
  EBM_HD void phase(int) {}
  EBM_HD void key(int) {}
};

}  // namespace ebm
