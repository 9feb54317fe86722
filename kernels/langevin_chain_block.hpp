// The per-image code of the fused Langevin chain (kernels/langevin_chain.cuh): all K steps of DESIGN §1 for
// the images one thread block owns, written once for nvcc and g++ as block-cooperative phases.
//
//   phase 0            load x from global memory, x ← clip(x + noise·N(0,1))            (step 0's perturb)
//   per step k, L layers, 2L phases:
//     forward l        z = conv_l(a_{l−1}) + b;  a_l = swish(z), s_l = swish'(z)          (l < L−1)
//                      the last layer writes dz_{L−1} = wd ⊙ swish'(z) instead: f = wd·a + bd, so
//                      df/da_{L−1} = wd and the dense head needs no phase of its own
//     backward l ≥ 1   dz_{l−1} = convᵀ_l(dz_l) ⊙ s_{l−1}
//     backward 0       dfdx = convᵀ_0(dz_0); x ← clip(x − step·clip(−dfdx, ±grad_clip), −1, 1), then step k+1's
//                      perturb; after the last step x goes back to global memory instead
//
// A phase is chain_phase(lane, phase, tid, nthreads, ...): thread tid does its share of the phase's elements, its memory
// accesses and multiply-adds through `lane` (kernels/chain_lane.hpp: the GPU's instructions, or the CPU's records); a
// barrier
// (__syncthreads on the GPU) separates phases. Within a phase every thread writes only the elements it owns and
// reads only what earlier phases wrote, so the result does not depend on thread order or count —
// tests/test_langevin_chain_harness.cpp runs each phase for every tid in ascending and in descending order (and
// at other thread counts) on the CPU and demands the same bits. Every element is one thread's plain sum (a
// gather, no atomics): the chain is deterministic on the GPU too.
//
// Shared memory, per image (floats; NCHW within a layer; ChainNet's offsets):
//   x    [img]                       the chain's state, layer 0's input
//   s_l  [C_l·H_l·W_l], l < L−1       swish'(z_l), kept for the backward pass
//   buf0, buf1 [max_l C_l·H_l·W_l]    ping-pong: a_l (forward) and dz_l (backward) both live in buf[l % 2]
// Weights and biases are read from global memory through the read-only cache (lane.ldg), shared by the
// images of a block: each weight load feeds kImages multiply-adds.
//
// Noise: element e of image g (global row index) at step k is element g·img + e of Philox stream (seed, stream)
// at block offset + k·blocks_per_step — philox_normal_at's numbers, as CpuBackend::langevin and
// kernels/langevin.cu draw them. Images of a multiple of 4 pixels take one Philox block per 4 elements.
#pragma once
#include <cstdint>

#include "kernels/chain_lane.hpp"   // the Lane the phases go through (DeviceLane, HostLane, tests' SimLane)
#include "kernels/ebm_math.hpp"     // clampf, sigmoidf, langevin_perturb, langevin_descend
#include "kernels/hostdevice.hpp"   // EBM_HD
#include "kernels/philox.hpp"       // philox_normal_at, philox_normal4

namespace ebm {

constexpr int kChainMaxLayers = 8;   // model.channels allows at most 8 layers (host/io/config.cpp)
constexpr int kChainThreads = 256;   // threads per block on the GPU

// One conv layer (k×k, stride, zero pad, bias, swish), NCHW, and where its data lives.
struct ChainLayer {
  int cin, cout, k, stride, pad, hin, win, hout, wout;
  int64_t w_off, b_off;  // weight [cout, cin, k, k] and bias [cout] in the flat parameters
  int s_off;             // shared-memory offset (floats) of s_l = swish'(z_l); −1 for the last layer
  EBM_HD int out_size() const { return cout * hout * wout; }
};

struct ChainNet {
  int layers = 0;
  ChainLayer l[kChainMaxLayers];
  int64_t dense_w_off = 0;  // dense.weight [1, D] (K = 1), D = the last layer's C·H·W in NCHW order
  int img = 0;              // in_c·H·W: the image, layer 0's input, at shared-memory offset 0
  int buf_off[2] = {0, 0};  // the ping-pong buffers
  int image_floats = 0;     // one image's share of shared memory, a multiple of 4 floats (16-byte aligned)
};

// Fills the shared-memory offsets of a net whose layers (shapes and parameter offsets) are set.
inline void chain_layout(ChainNet& net) {
  auto round4 = [](int v) { return (v + 3) / 4 * 4; };
  int off = round4(net.img), largest = 0;
  for (int l = 0; l < net.layers; ++l) {
    ChainLayer& c = net.l[l];
    largest = c.out_size() > largest ? c.out_size() : largest;
    c.s_off = -1;
    if (l + 1 < net.layers) {
      c.s_off = off;
      off += round4(c.out_size());
    }
  }
  net.buf_off[0] = off;
  net.buf_off[1] = off + round4(largest);
  net.image_floats = off + 2 * round4(largest);
}

struct ChainSampler {
  int steps;
  float step_size, noise, grad_clip;
};

// The noise of the chain, resolved: step k's normals are the stream's at block offset + k·blocks_per_step.
struct ChainNoise {
  uint64_t seed, stream, offset, blocks_per_step;
};

EBM_HD int chain_phases(const ChainNet& net, int steps) { return 1 + steps * 2 * net.layers; }

namespace chain_detail {

// Normals of elements base .. base+3 of step `step`'s draw (base a multiple of 4 when `aligned`); `count` ≤ 4
// of them are used. Bit for bit philox_normal_at(seed, stream, offset_k, base + j).
EBM_HD void normals4(const ChainNoise& nz, int step, uint64_t base, bool aligned, int count, float out[4]) {
  const uint64_t off = nz.offset + uint64_t(step) * nz.blocks_per_step;
  if (aligned) {
    philox_normal4(nz.seed, nz.stream, off + base / 4, out);
    return;
  }
  for (int j = 0; j < count; ++j) out[j] = philox_normal_at(nz.seed, nz.stream, off, base + uint64_t(j));
}

// Phase 0: x (smem) ← perturb(x (global)) for the block's images.
template <int kImages, class Lane>
EBM_HD void load(Lane& lane, int tid, int nthreads, float* smem, const ChainNet& net, const float* xg, int nimg,
                 int64_t first_image, const ChainSampler& p, const ChainNoise& nz) {
  const int img = net.img, groups = (img + 3) / 4;
  const bool noisy = p.noise > 0.0f && p.steps > 0, aligned = img % 4 == 0;
  for (int g = tid; g < groups; g += nthreads) {
    const int e0 = 4 * g, count = img - e0 < 4 ? img - e0 : 4;
    for (int i = 0; i < kImages; ++i) {
      if (i >= nimg) break;
      float* x = smem + i * net.image_floats;
      const float* src = xg + int64_t(i) * img;
      float n4[4] = {0, 0, 0, 0};
      if (noisy) normals4(nz, 0, uint64_t(first_image + i) * uint64_t(img) + uint64_t(e0), aligned, count, n4);
      for (int j = 0; j < count; ++j) {
        const float v = lane.ldg(src + e0 + j);
        lane.sts(x + e0 + j, noisy ? langevin_perturb(v, p.noise, n4[j]) : v);
      }
    }
  }
}

// Forward of layer l for output elements e = tid, tid + nthreads, ... of every image.
template <int kImages, class Lane>
EBM_HD void forward(Lane& lane, int l, int tid, int nthreads, float* smem, const ChainNet& net,
                    const float* __restrict__ params, int nimg) {
  const ChainLayer& c = net.l[l];
  const bool last = l + 1 == net.layers;
  const int in_off = l == 0 ? 0 : net.buf_off[(l - 1) % 2], out_off = net.buf_off[l % 2];
  const float* __restrict__ w = params + c.w_off;
  const int hw = c.hout * c.wout, count = c.cout * hw, kk = c.k * c.k;
  for (int e = tid; e < count; e += nthreads) {
    const int co = e / hw, oy = (e % hw) / c.wout, ox = e % c.wout;
    float acc[kImages];
    for (int i = 0; i < kImages; ++i) acc[i] = 0.0f;
    const int iy0 = oy * c.stride - c.pad, ix0 = ox * c.stride - c.pad;
    for (int ci = 0; ci < c.cin; ++ci) {
      const float* __restrict__ wc = w + (int64_t(co) * c.cin + ci) * kk;  // [k][k] of (co, ci)
      const int in_c = in_off + ci * c.hin * c.win;
      for (int ky = 0; ky < c.k; ++ky) {
        const int iy = iy0 + ky;
        if (iy < 0 || iy >= c.hin) continue;
        for (int kx = 0; kx < c.k; ++kx) {
          const int ix = ix0 + kx;
          if (ix < 0 || ix >= c.win) continue;
          lane.key((ci * c.k + ky) * c.k + kx);  // lanes on the border skip taps: the warp runs the union
          const float wv = lane.ldg(wc + ky * c.k + kx);
          const int at = in_c + iy * c.win + ix;
          for (int i = 0; i < kImages; ++i)
            if (i < nimg) acc[i] = lane.fma(lane.lds(smem + i * net.image_floats + at), wv, acc[i]);
        }
      }
    }
    lane.key(-1);
    const float b = lane.ldg(params + c.b_off + co);
    const float wd = last ? lane.ldg(params + net.dense_w_off + e) : 0.0f;
    for (int i = 0; i < kImages; ++i) {
      if (i >= nimg) break;
      float* base = smem + i * net.image_floats;
      const float z = acc[i] + b, s = sigmoidf(z);
      const float ds = s * (1.0f + z * (1.0f - s));  // swish'(z), as kernels/ebm_math.hpp's swish_gradf
      if (last) {
        lane.sts(base + out_off + e, wd * ds);  // dz_{L−1} = df/da ⊙ swish'(z), df/da = wd
      } else {
        lane.sts(base + out_off + e, z * s);    // a = swish(z)
        lane.sts(base + c.s_off + e, ds);
      }
    }
  }
}

// dL/d(input element (ci, iy, ix)) of layer l for every image: Σ over the taps that read it of dz·w.
template <int kImages, class Lane>
EBM_HD void gather(Lane& lane, const ChainLayer& c, const float* __restrict__ w, const float* smem, int image_floats,
                   int dz_off, int nimg, int ci, int iy, int ix, float acc[kImages]) {
  for (int i = 0; i < kImages; ++i) acc[i] = 0.0f;
  const int kk = c.k * c.k, hw = c.hout * c.wout;
  for (int ky = 0; ky < c.k; ++ky) {
    const int ty = iy + c.pad - ky;
    if (ty < 0 || ty % c.stride != 0 || ty / c.stride >= c.hout) continue;
    const int oy = ty / c.stride;
    for (int kx = 0; kx < c.k; ++kx) {
      const int tx = ix + c.pad - kx;
      if (tx < 0 || tx % c.stride != 0 || tx / c.stride >= c.wout) continue;
      const int q = oy * c.wout + tx / c.stride;
      const float* __restrict__ wt = w + int64_t(ci) * kk + ky * c.k + kx;  // + co·cin·kk
      lane.key(ky * c.k + kx);  // lanes of other parities skip this tap: the warp runs the union of taps
      for (int co = 0; co < c.cout; ++co) {
        const float wv = lane.ldg(wt + int64_t(co) * c.cin * kk);
        const int at = dz_off + co * hw + q;
        for (int i = 0; i < kImages; ++i)
          if (i < nimg) acc[i] = lane.fma(lane.lds(smem + i * image_floats + at), wv, acc[i]);
      }
    }
  }
  lane.key(-1);
}

// Backward of layer l ≥ 1: dz_{l−1} = convᵀ(dz_l) ⊙ s_{l−1}.
template <int kImages, class Lane>
EBM_HD void backward(Lane& lane, int l, int tid, int nthreads, float* smem, const ChainNet& net,
                     const float* __restrict__ params, int nimg) {
  const ChainLayer& c = net.l[l];
  const int dz_off = net.buf_off[l % 2], out_off = net.buf_off[(l - 1) % 2], s_off = net.l[l - 1].s_off;
  const int hw = c.hin * c.win, count = c.cin * hw;
  for (int e = tid; e < count; e += nthreads) {
    float acc[kImages];
    gather<kImages>(lane, c, params + c.w_off, smem, net.image_floats, dz_off, nimg, e / hw, (e % hw) / c.win,
                    e % c.win, acc);
    for (int i = 0; i < kImages; ++i) {
      if (i >= nimg) break;
      float* base = smem + i * net.image_floats;
      lane.sts(base + out_off + e, acc[i] * lane.lds(base + s_off + e));
    }
  }
}

// Backward of layer 0 fused with the update: step k's descend, then step k+1's perturb, or the store after the
// last step. Groups of 4 input elements per thread, one Philox block each.
template <int kImages, class Lane>
EBM_HD void backward_update(Lane& lane, int step, int tid, int nthreads, float* smem, const ChainNet& net,
                            const float* __restrict__ params, float* xg, int nimg, int64_t first_image,
                            const ChainSampler& p, const ChainNoise& nz) {
  const ChainLayer& c = net.l[0];
  const int img = net.img, groups = (img + 3) / 4, hw = c.hin * c.win, dz_off = net.buf_off[0];
  const bool last = step + 1 == p.steps, noisy = p.noise > 0.0f && !last, aligned = img % 4 == 0;
  for (int g = tid; g < groups; g += nthreads) {
    const int e0 = 4 * g, count = img - e0 < 4 ? img - e0 : 4;
    float n4[kImages][4];
    for (int i = 0; i < kImages; ++i) {
      if (i >= nimg) break;
      if (noisy)
        normals4(nz, step + 1, uint64_t(first_image + i) * uint64_t(img) + uint64_t(e0), aligned, count, n4[i]);
    }
    for (int j = 0; j < count; ++j) {
      const int e = e0 + j;
      float dfdx[kImages];
      gather<kImages>(lane, c, params + c.w_off, smem, net.image_floats, dz_off, nimg, e / hw, (e % hw) / c.win,
                      e % c.win, dfdx);
      for (int i = 0; i < kImages; ++i) {
        if (i >= nimg) break;
        float* x = smem + i * net.image_floats;
        float v = langevin_descend(lane.lds(x + e), dfdx[i], p.step_size, p.grad_clip);
        if (noisy) v = langevin_perturb(v, p.noise, n4[i][j]);
        if (last) lane.stg(xg + int64_t(i) * img + e, v);
        else lane.sts(x + e, v);
      }
    }
  }
}

}  // namespace chain_detail

// One phase of the chain for the block's images: xg = the block's first image in global memory (nimg ≤ kImages
// images, rows first_image.. of the whole batch, for the noise), smem = kImages·net.image_floats floats. Phases
// 0 .. chain_phases(net, p.steps) − 1, each after a barrier behind the previous one; p.steps ≥ 1.
template <int kImages, class Lane>
EBM_HD void chain_phase(Lane& lane, int phase, int tid, int nthreads, float* smem, const ChainNet& net,
                        const float* __restrict__ params, float* xg, int nimg, int64_t first_image,
                        const ChainSampler& p, const ChainNoise& nz) {
  if (phase == 0) {
    lane.phase(-1);
    return chain_detail::load<kImages>(lane, tid, nthreads, smem, net, xg, nimg, first_image, p, nz);
  }
  const int L = net.layers, q = phase - 1, step = q / (2 * L), r = q % (2 * L);
  lane.phase(r);  // the tiled chain's phase ids: forward l is l, backward l is 2L−1−l
  if (r < L) return chain_detail::forward<kImages>(lane, r, tid, nthreads, smem, net, params, nimg);
  const int l = 2 * L - 1 - r;
  if (l > 0) return chain_detail::backward<kImages>(lane, l, tid, nthreads, smem, net, params, nimg);
  chain_detail::backward_update<kImages>(lane, step, tid, nthreads, smem, net, params, xg, nimg, first_image, p, nz);
}

}  // namespace ebm
