// The fused Langevin chain, second design: every shape a compile-time constant, one image a block, the convolutions as
// register-tiled implicit GEMMs with no divergent branch, the transposed (backward) convolutions by sub-pixel, and —
// in the "resident" variant — the weights on chip: the leading layers in shared memory for the whole chain, the rest
// streamed tap by tap through a ring of shared-memory slots by bulk copies. The same per-thread code runs on the GPU
// (kernels/langevin_chain_tiled.cu, through DeviceLane) and on the CPU (tests/block_sim.hpp, through SimLane, which
// also measures it); see kernels/chain_lane.hpp for the Lane interface and bench/README.md for the design's numbers.
//
// What one block computes (DESIGN §1, all K steps, for its image; layers l = 0..L−1, 3×3 kernels, stride 2, pad 1):
//   load       x ← clip(x + noise·N(0,1))                       (global [C0,H,W] → shared, parity planes)
//   per step:  forward l  z_l = conv_l(a_{l−1}) + b_l;  a_l = swish(z_l), s_l = swish'(z_l)   (l < L−1)
//                         last layer: dz_{L−1} = wd ⊙ swish'(z_{L−1})   (f = wd·a + bd, so df/da = wd)
//              backward l dz_{l−1} = convᵀ_l(dz_l) ⊙ s_{l−1}            (l = L−1 .. 1)
//              update     dfdx = convᵀ_0(dz_0); x ← clip(x − step·clip(−dfdx, ±c)) then the next step's noise, or
//                         x → global after the last step
//   a block barrier after every phase: 2L per step.
//
// Conventions. Grid level g: the input of layer g (g = 0: the image), H_g = H0 >> g. A forward layer's output pixel
// (oy, ox) reads input rows 2oy−1, 2oy, 2oy+1: with the input stored as four parity planes (py, px) of H_g/2 × W_g/2
// (pixel (iy, ix) in plane (iy & 1, ix & 1) at (iy >> 1, ix >> 1)), tap (ky, kx) reads plane (ky ≠ 1, kx ≠ 1) at
// (oy − [ky = 0], ox − [kx = 0]): lanes on consecutive output pixels read consecutive words (no bank conflict) and
// only the top and left taps need a predicate. The backward of a layer is computed per super-pixel (qy, qx) of its
// input grid, the 2×2 pixels (2qy + py, 2qx + px): tap (ky, kx) adds w·dz(qy + [ky = 0], qx + [kx = 0]) to the pixel
// of parity (ky ≠ 1, kx ≠ 1), so every lane runs the same 9 taps (the first kernel's gather ran all 9 for lanes that
// needed 1, 2 or 4: 17–24 % of the lanes were active) and only the bottom and right neighbours need a predicate.
//
// Shared memory, per block (floats; offsets and pitches in TiledPlan):
//   x         [C0][4 planes] (pitch cp[0])                 the chain's state
//   s_g       [C_g][4 planes] for g = 1..L−1                swish'(z) of layer g−1's output, kept for the backward
//   buf0/1    a_out(l) [C][4 planes] and dz(l) [C][pixels] in buf[l % 2] (forward outputs and backward gradients)
//   weights   resident variant: every bias, the dense weights, and W of the leading `resident` layers, each
//             W [9 taps][cin][wp] (co fastest, wp ≥ cout padded against bank conflicts)
//   ring      resident variant: `ring_slots` slots of one tap of the streamed layers ([cin][wp] each) and 2 mbarriers
//             a slot (full: the bulk copy landed; empty: every warp has read it)
// The packed weights in global memory have that layout too (tiled_pack_source: one small kernel per training step
// packs them from the engine's flat parameters).
//
// Determinism: every output element is one thread's sum (a split-K partial sum is reduced by a fixed shuffle tree);
// the result is the same bits in any thread order, and the two weight homes (global or shared) give the same bits.
#pragma once
#include <cstdint>

#include "kernels/chain_lane.hpp"   // F4, the Lane interface
#include "kernels/ebm_math.hpp"     // sigmoidf, langevin_perturb, langevin_descend
#include "kernels/hostdevice.hpp"   // EBM_HD
#include "kernels/philox.hpp"       // philox4x32_10, philox_normal4

namespace ebm {

constexpr int kTiledMaxLayers = 8;
constexpr int kTaps = 9;
constexpr int kDzSlack = 64;  // ≥ the widest grid + 1 (W ≤ 63 at a layer's output)

// --- the net, at compile time ---

// C0 input channels of H0×H0 images, then one 3×3 stride-2 pad-1 swish conv layer per entry of Cs; a dense head of one
// output on the last layer's NCHW-flattened features.
template <int C0, int H0, int... Cs>
struct TiledNet {
  static constexpr int layers = int(sizeof...(Cs));
  static constexpr int ch[layers + 1] = {C0, Cs...};
  static constexpr int h0 = H0;
  static constexpr int in_c = C0;
  static constexpr int img = C0 * H0 * H0;
  static_assert(layers >= 1 && layers <= kTiledMaxLayers, "1 to 8 conv layers");
};

// How a phase's outputs are spread over threads (an implicit GEMM: output channels × pixels, reduced over K).
//   tc   channels a thread computes (forward: output channels, a multiple of 4 read as float4; backward: input channels)
//   tp   pixels (forward) or super-pixels (backward) a thread computes, strided by the number of pixel groups so that
//        the lanes of a warp read consecutive words
//   sk   the reduction split over sk lanes of one warp (forward: input channels; backward: blocks of 4 output
//        channels), summed by a shuffle tree; a power of 2
//   pgw  pixel groups a warp's lanes cover (lanes: pgw pixel groups fastest, then the sk split, then channel groups)
struct ChainTiles {
  int tc = 0, tp = 0, sk = 0, pgw = 0;
  constexpr bool valid() const { return tc > 0; }
};

// One conv phase's shape as the tile chooser sees it.
struct PhaseShape {
  bool backward;
  int out_ch;  // forward: cout (the tiled channels); backward: cin
  int k_ch;    // forward: cin (split by sk); backward: cout / 4 (blocks of four output channels, split by sk)
  int pix;     // forward: output pixels; backward: super-pixels (= output pixels of the layer)
  bool update = false;  // layer 0's backward: a thread's share after the split must be whole pixel pairs
};

// Cost of a phase under a tile choice, in SM cycles (the model tiles are chosen by; bench/README.md): 4 warp FFMAs a
// cycle, 1 shared-memory wavefront a cycle, 4 warp instructions a cycle, whichever binds, plus the shuffle tree.
constexpr double tile_cost(const PhaseShape& s, const ChainTiles& t) {
  const int npg = s.pix / t.tp, ncg = s.out_ch / t.tc, total = npg * t.sk * ncg;
  const int cgw = 32 / (t.pgw * t.sk), warps = total / 32;
  const int ksteps = kTaps * (s.k_ch / t.sk);
  const int v = t.tc * t.tp * (s.backward ? 4 : 1);
  const double fma = s.backward ? 4.0 * t.tc * t.tp : 1.0 * t.tc * t.tp;
  const double w_instr = s.backward ? t.tc : t.tc / 4.0;
  const double w_distinct = double(t.sk) * cgw;  // distinct float4 a weight load reads in a warp
  const double w_wave = w_instr * (w_distinct > 8 ? w_distinct / 8 : 1);
  const double a_instr = s.backward ? 4.0 * t.tp : t.tp;
  const double per_step = fma / 4 > w_wave + a_instr ? fma / 4 : w_wave + a_instr;
  const double issue = (fma + w_instr + a_instr) / 4;
  const double body = warps * ksteps * (per_step > issue ? per_step : issue);
  double shuffles = 0;
  for (int m = v, k = t.sk; k > 1; k /= 2) shuffles += m > 1 ? (m /= 2, m) : 1;
  return body + warps * shuffles * 2.0;
}

// The cheapest tiles for a phase at nt threads: every thread busy for the same number of items (max/mean 1), at most
// 16 forward or 32 backward accumulators a thread at 256 threads, half that at 512 (no spills in 255 or 128
// registers), a split's sk lanes in one warp.
constexpr ChainTiles choose_tiles(const PhaseShape& s, int nt) {
  ChainTiles best{};
  double best_cost = 1e300;
  const int tcs[] = {16, 8, 4, 2, 1};
  for (int tc : tcs) {
    if (s.out_ch % tc != 0 || (!s.backward && tc % 4 != 0)) continue;
    for (int tp = 1; tp <= 8; tp *= 2) {
      if (s.pix % tp != 0) continue;
      const int v = tc * tp * (s.backward ? 4 : 1);
      // Accumulators a thread holds: at 512 threads a thread has 128 registers, at 256 it has 255.
      if (v > (s.backward ? 32 : 16) / (nt > 256 ? 2 : 1)) continue;
      for (int sk = 1; sk <= 32; sk *= 2) {
        if (s.k_ch % sk != 0) continue;
        if (v < sk && v * 2 != sk) continue;  // a shuffle tree with at most one all-reduce round
        if (s.update && (v < sk || (v / sk) % (2 * tc) != 0)) continue;
        for (int pgw = 1; pgw * sk <= 32; pgw *= 2) {
          const int npg = s.pix / tp, ncg = s.out_ch / tc, cgw = 32 / (pgw * sk);
          if (npg % pgw != 0 || ncg % cgw != 0) continue;
          if (sk > 1 && cgw > 1) continue;  // split lanes beside channel groups: weight reads no pitch frees of conflicts
          const int total = npg * sk * ncg;
          if (total % nt != 0) continue;
          const ChainTiles t{tc, tp, sk, pgw};
          const double c = tile_cost(s, t);
          if (c < best_cost) best_cost = c, best = t;
        }
      }
    }
  }
  return best;
}

// Rounds v up to a multiple of m.
constexpr int round_up(int v, int m) { return (v + m - 1) / m * m; }

// A work item's place in a phase: pixel group, split lane, channel group (lanes: pgw pixel groups fastest, then the
// sk split, then channel groups; warps: pixel groups, then channel groups). Shared by the phases and PitchModel.
struct TileItem {
  int pg, s, cg;
};
EBM_HD constexpr TileItem decode_item(int item, int npg, int sk, int pgw) {
  const int cgw = 32 / (pgw * sk), pgh = npg / pgw, lane = item % 32, warp = item / 32;
  return {(warp % pgh) * pgw + lane % pgw, (lane / pgw) % sk, (warp / pgh) * cgw + lane / (pgw * sk)};
}

// Where split lane s's share starts among a phase's v sums after reduce_split (its halving keeps the upper half where
// s has the round's bit set).
EBM_HD constexpr int split_offset(int v, int sk, int s) {
  int off = 0, m = v;
  for (int bit = 1; bit < sk; bit *= 2)
    if (m >= 2) {
      m /= 2;
      if (s & bit) off += m;
    }
  return off;
}

// Shared-memory wavefronts of one warp access: the most distinct 4-byte words one of the 32 banks must deliver.
struct BankSet {
  int word[32][8];  // (only the first n[b] of a bank are read)
  int n[32] = {};
  constexpr void add(int w, int width = 1) {
    for (int k = 0; k < width; ++k) {
      const int v = w + k, b = ((v % 32) + 32) % 32;
      bool seen = false;
      for (int i = 0; i < (n[b] < 8 ? n[b] : 8); ++i) seen = seen || word[b][i] == v;
      if (seen) continue;
      if (n[b] < 8) word[b][n[b]] = v;
      ++n[b];
    }
  }
  constexpr int waves() const {
    int m = 0;
    for (int b = 0; b < 32; ++b) m = n[b] > m ? n[b] : m;
    return m;
  }
};

// Everything about a net's chain that is known at compile time: tiles, pitches, offsets, the ring.
struct TiledPlan {
  int layers = 0, nt = 0;
  bool resident = false;       // weights on chip (the "resident" variant); else read from global memory
  int resident_layers = 0;     // leading layers whose W stays in shared memory (resident variant)
  int ring_slots = 0;          // slots of the ring the other layers stream through (0: none streams)
  int chunk_floats = 0;        // one ring slot: the largest streamed layer's tap, cin·wp
  int chunks = 0;              // chunks a forward pass streams: 9 × streamed layers
  unsigned tf32_mask = 0;      // bit l: layer l runs on TF32 tensor cores (mma.m16n8k8); none by default
  constexpr bool mma(int l) const { return l >= 0 && l < layers && ((tf32_mask >> l) & 1u) != 0; }
  ChainTiles fwd[kTiledMaxLayers], bwd[kTiledMaxLayers];
  int cin[kTiledMaxLayers] = {}, cout[kTiledMaxLayers] = {}, hin[kTiledMaxLayers] = {};
  int pp[kTiledMaxLayers + 1] = {}, cp[kTiledMaxLayers + 1] = {};  // parity planes at grid level g: plane, channel pitch
  int dp[kTiledMaxLayers] = {};  // dz(l) [cout][pixels]: channel pitch
  int wp[kTiledMaxLayers] = {};  // W(l) [tap][cin][wp]
  // packed weights (global; the resident variant's shared copy has the same offsets from its own base)
  int gw[kTiledMaxLayers] = {}, gb[kTiledMaxLayers] = {}, gwd = 0, packed_floats = 0, resident_floats = 0;
  // shared memory (floats)
  int off_x = 0, off_s[kTiledMaxLayers + 1] = {}, off_buf[2] = {0, 0}, off_w = 0, off_ring = 0, off_mbar = 0;
  int smem_floats = 0;
  bool pitch_model_complete = true;  // every access pattern fit PitchTerms (TiledChain asserts it)
};

// Warp instructions whose lanes' words are ch·A + pl·B + pos for pitches (A, B) under search: built once from the
// phases' own index arithmetic, then scored for each candidate pitch by the wavefronts they take. What does not fit
// sets `overflow` (the plan then says so, and TiledChain refuses to compile it) rather than go unscored.
struct PitchTerms {
  static constexpr int kMaxEntries = 2048, kMaxInstr = 64;
  int ch[kMaxEntries] = {}, pl[kMaxEntries] = {}, pos[kMaxEntries] = {};
  int start[kMaxInstr + 1] = {}, weight[kMaxInstr] = {}, width[kMaxInstr] = {};
  int n = 0, instr = 0;
  bool overflow = false;
  constexpr void begin(int w, int wid = 1) {
    if (instr < kMaxInstr)
      start[instr] = n, weight[instr] = w, width[instr] = wid, ++instr;
    else
      overflow = true;
  }
  constexpr void add(int c, int l, int q) {
    if (n < kMaxEntries)
      ch[n] = c, pl[n] = l, pos[n] = q, ++n;
    else
      overflow = true;
  }
  // Scoring stops once the total reaches `bound` (the search's best so far: it only asks whether a candidate beats it;
  // the weights are positive, so the total only grows). Most candidates lose early: the compile-time plans cost half.
  constexpr int cost(int A, int B, int bound = 1 << 30) const {
    int total = 0;
    for (int i = 0; i < instr && total < bound; ++i) {
      BankSet b;
      const int end = i + 1 < instr ? start[i + 1] : n;
      for (int e = start[i]; e < end; ++e) b.add(ch[e] * A + pl[e] * B + pos[e], width[i]);
      total += weight[i] * b.waves();
    }
    return total;
  }
};

// The access patterns of warp 0 in each phase (every warp's are the same up to a common offset), as the phases compute
// their addresses; each pattern's wavefronts weighted by how often a thread issues it. What the pitch search scores.
struct PitchModel {
  static constexpr int weights(const TiledPlan& P, int l, int wp);
  // planes at level g (A = channel pitch, B = plane pitch): forward g's reads, its writer's stores, the S readers
  static constexpr PitchTerms level(const TiledPlan& P, int g);
  // dz(l) (A = channel pitch): backward l's reads and its writer's stores
  static constexpr PitchTerms dz(const TiledPlan& P, int l);

 private:
  // A SIMT phase's epilogue as warp 0's lanes run it: tiles t over `plane` positions, `classes` parity classes an item
  // (1 forward, 4 backward); a warp instruction (weight w) per round, then f(channel, class, position) for each lane
  // holding an item in that round (the split of the phases' own epilogue loops: split_offset, idx → c, class, j).
  template <class F>
  static constexpr void simt_epilogue(PitchTerms& T, int w, const ChainTiles& t, int plane, int classes, F f) {
    const int v = t.tc * t.tp * classes, mine = v / t.sk > 0 ? v / t.sk : 1, np = plane / t.tp;
    for (int k = 0; k < mine; ++k) {
      T.begin(w);
      for (int lane = 0; lane < 32; ++lane) {
        const TileItem it = decode_item(lane, np, t.sk, t.pgw);
        if (v < t.sk && it.s >= v) continue;
        const int idx = split_offset(v, t.sk, it.s) + k;
        f(it.cg * t.tc + idx % t.tc, (idx / t.tc) % classes, it.pg + np * (idx / (classes * t.tc)));
      }
    }
  }
  // An mma phase's epilogue as warp 0's lanes hold a 16×8 tile: a warp instruction (weight w) per accumulator register
  // r, then f(row g (+8), column 2t (+1)) for each lane whose column is below cols.
  template <class F>
  static constexpr void mma_epilogue(PitchTerms& T, int w, int cols, F f) {
    for (int r = 0; r < 4; ++r) {
      T.begin(w);
      for (int lane = 0; lane < 32; ++lane) {
        const int row = lane / 4 + 8 * (r >> 1), col = 2 * (lane % 4) + (r & 1);
        if (col < cols) f(row, col);
      }
    }
  }
};

constexpr int PitchModel::weights(const TiledPlan& P, int l, int wp) {
  const int pix = (P.hin[l] / 2) * (P.hin[l] / 2);
  int cost = 0;
  if (P.mma(l)) {  // mma A fragments: forward W[k0 + t][m0 + g], backward W[m0 + g][k0 + t] (g = lane/4, t = lane%4)
    BankSet f, b;
    for (int lane = 0; lane < 32; ++lane) {
      f.add((lane % 4) * wp + lane / 4);
      b.add((lane / 4) * wp + lane % 4);
    }
    return f.waves() * kTaps * P.cin[l] / 8 * 4 + b.waves() * kTaps * P.cout[l] / 8 * 4;
  }
  {  // forward: float4 of W[ci = s + sk·m][cg·tc + 4q]
    const ChainTiles t = P.fwd[l];
    BankSet b;
    for (int lane = 0; lane < 32; ++lane) {
      const TileItem it = decode_item(lane, pix / t.tp, t.sk, t.pgw);
      b.add(it.s * wp + it.cg * t.tc, 4);
    }
    cost += b.waves() * kTaps * (P.cin[l] / t.sk) * (t.tc / 4);
  }
  {  // backward: float4 of W[cg·tc + c][4·(s + sk·m)]
    const ChainTiles t = P.bwd[l];
    BankSet b;
    for (int lane = 0; lane < 32; ++lane) {
      const TileItem it = decode_item(lane, pix / t.tp, t.sk, t.pgw);
      b.add(it.cg * t.tc * wp + 4 * it.s, 4);
    }
    cost += b.waves() * kTaps * (P.cout[l] / 4 / t.sk) * t.tc;
  }
  return cost;
}

constexpr PitchTerms PitchModel::level(const TiledPlan& P, int g) {
  const int plane = (P.hin[g] / 2) * (P.hin[g] / 2);
  PitchTerms T;
  if (P.mma(g)) {  // mma B fragments: in[ci = k0 + t][n0 + g + shift]
    T.begin(kTaps * P.cin[g] / 8 * 2);
    for (int lane = 0; lane < 32; ++lane) T.add(lane % 4, 0, lane / 4);
  } else {  // forward g reads in[ci = s + sk·m][plane][pg + npg·j + shift]
    const ChainTiles t = P.fwd[g];
    T.begin(kTaps * (P.cin[g] / t.sk) * t.tp);
    for (int lane = 0; lane < 32; ++lane) {
      const TileItem it = decode_item(lane, plane / t.tp, t.sk, t.pgw);
      T.add(it.s, 0, it.pg);
    }
  }
  if (g >= 1) {  // forward g−1's epilogue writes a and s' (co, pixel p of its output = this level's parity plane)
    const int wol = P.hin[g - 1] / 2;
    const auto write = [&](int co, int, int p) {
      const int oy = p / wol, ox = p % wol;
      T.add(co, (oy & 1) * 2 + (ox & 1), (oy >> 1) * (wol / 2) + (ox >> 1));
    };
    if (P.mma(g - 1))  // co = m0 + g (+8), p = n0 + 2t (+1)
      mma_epilogue(T, 2, wol * wol, [&](int co, int p) { write(co, 0, p); });
    else
      simt_epilogue(T, 2, P.fwd[g - 1], wol * wol, 1, write);
  }
  if (g >= 1) {  // backward g's epilogue reads s'[ci][par][q] (its super-pixels q are this level's plane positions)
    const auto read = [&](int ci, int par, int q) { T.add(ci, par, q); };
    if (P.mma(g))  // ci = m0 + g (+8), q = n0 + 2t (+1); par is the instruction's, a common offset
      mma_epilogue(T, 4, plane, [&](int ci, int q) { read(ci, 0, q); });
    else
      simt_epilogue(T, 1, P.bwd[g], plane, 4, read);
  }
  if (g == 0) {  // the update reads and writes x[ci][2py + px][q], a pixel pair a lane
    const ChainTiles u = P.bwd[0];
    const int vb = u.tc * u.tp * 4, mb = vb / u.sk, npq = plane / u.tp;
    for (int k = 0; k < mb; k += 2 * u.tc)
      for (int c = 0; c < u.tc; ++c)
        for (int px = 0; px < 2; ++px) {
          T.begin(2);
          for (int lane = 0; lane < 32; ++lane) {
            const TileItem it = decode_item(lane, npq, u.sk, u.pgw);
            const int idx = split_offset(vb, u.sk, it.s) + k, j = idx / (4 * u.tc), py = (idx / (2 * u.tc)) % 2;
            T.add(it.cg * u.tc + c, 2 * py + px, it.pg + npq * j);
          }
        }
  }
  return T;
}

constexpr PitchTerms PitchModel::dz(const TiledPlan& P, int l) {
  const int L = P.layers, wo = P.hin[l] / 2, pix = wo * wo;
  PitchTerms T;
  if (P.mma(l)) {  // mma B fragments: dz[co = k0 + t][n0 + g + shift]
    T.begin(kTaps * P.cout[l] / 8 * 2);
    for (int lane = 0; lane < 32; ++lane) T.add(lane % 4, 0, lane / 4);
  } else {  // backward l reads dz[4·(s + sk·m) + k][q + shift]
    const ChainTiles t = P.bwd[l];
    T.begin(kTaps * (P.cout[l] / 4 / t.sk) * 4 * t.tp);
    for (int lane = 0; lane < 32; ++lane) {
      const TileItem it = decode_item(lane, pix / t.tp, t.sk, t.pgw);
      T.add(4 * it.s, 0, it.pg);
    }
  }
  const auto write = [&](int c, int, int p) { T.add(c, 0, p); };
  if (l == L - 1) {  // the last forward writes dz[co][p]
    if (P.mma(l))    // co = m0 + g (+8), p = n0 + 2t (+1)
      mma_epilogue(T, 1, pix, [&](int co, int p) { write(co, 0, p); });
    else
      simt_epilogue(T, 1, P.fwd[l], pix, 1, write);
  } else {  // backward l+1's epilogue writes dz[ci][iy·hin + ix] over its super-pixels q, parity class par
    const int m = l + 1, wom = P.hin[m] / 2;
    const auto write_class = [&](int ci, int par, int q) {
      write(ci, 0, (2 * (q / wom) + (par >> 1)) * P.hin[m] + 2 * (q % wom) + (par & 1));
    };
    if (P.mma(m))  // ci = m0 + g (+8), q = n0 + 2t (+1), a class at a time
      for (int par = 0; par < 4; ++par) mma_epilogue(T, 1, wom * wom, [&](int ci, int q) { write_class(ci, par, q); });
    else
      simt_epilogue(T, 1, P.bwd[m], wom * wom, 4, write_class);
  }
  return T;
}

// Plans a net for nt threads a block; `resident`: weights in shared memory (then the leading layers stay, the others
// stream through `ring_slots` slots, as many leading layers as fit `smem_budget` bytes); `tf32`: layers after the
// first on TF32 tensor cores.
template <class Net>
constexpr TiledPlan make_tiled_plan(int nt, bool resident, int ring_slots, int smem_budget, bool tf32 = false) {
  TiledPlan P;
  const int L = Net::layers;
  P.layers = L;
  P.nt = nt;
  P.resident = resident;
  // TF32 where a layer fills mma tiles: 16 rows of output (forward) and input (backward) channels, K of 8. The
  // first layer (one input channel) stays FP32, as does any layer of fewer channels.
  for (int l = 1; l < L && tf32; ++l)
    if (Net::ch[l] % 16 == 0 && Net::ch[l + 1] % 16 == 0) P.tf32_mask |= 1u << l;

  for (int l = 0; l < L; ++l) {
    P.cin[l] = Net::ch[l];
    P.cout[l] = Net::ch[l + 1];
    P.hin[l] = Net::h0 >> l;
    const int pix = (P.hin[l] / 2) * (P.hin[l] / 2);
    P.fwd[l] = choose_tiles(PhaseShape{false, P.cout[l], P.cin[l], pix}, nt);
    P.bwd[l] = choose_tiles(PhaseShape{true, P.cin[l], P.cout[l] / 4, pix, l == 0}, nt);
  }
  // Pitches: searched against the phases' own access patterns (PitchModel, below): weights, then planes and dz
  // buffers by coordinate descent, each candidate scored by the shared-memory wavefronts its readers and writers take.
  for (int g = 0; g <= L; ++g) P.pp[g] = P.cp[g] = 0;
  for (int l = 0; l < L; ++l) {
    const int plane = (P.hin[l] / 2) * (P.hin[l] / 2);
    P.pp[l] = plane;
    P.cp[l] = 4 * plane;
    P.dp[l] = plane;
    const int w0 = round_up(P.cout[l], 4);
    int best = 1 << 30;
    for (int wp = w0; wp < w0 + 64; wp += 4) {
      const int c = PitchModel::weights(P, l, wp);
      if (c < best) best = c, P.wp[l] = wp;
    }
  }
  for (int g = 0; g < L; ++g) {  // planes: the channel pitch's padding, then the plane pitch's
    const int plane = (P.hin[g] / 2) * (P.hin[g] / 2);
    const PitchTerms T = PitchModel::level(P, g);
    P.pitch_model_complete = P.pitch_model_complete && !T.overflow;
    int best = 1 << 30, pad = 0, best_pp = plane;
    for (int b = 0; b < 32; ++b) {
      const int c = T.cost(4 * plane + b, plane, best);
      if (c < best) best = c, pad = b;
    }
    for (int a = 1; a < 16; ++a) {
      const int c = T.cost(4 * (plane + a) + pad, plane + a, best);
      if (c < best) best = c, best_pp = plane + a;
    }
    P.pp[g] = best_pp;
    P.cp[g] = 4 * best_pp + pad;
  }
  for (int l = 0; l < L; ++l) {  // dz buffers
    const int pix = (P.hin[l] / 2) * (P.hin[l] / 2);
    const PitchTerms T = PitchModel::dz(P, l);
    P.pitch_model_complete = P.pitch_model_complete && !T.overflow;
    int best = 1 << 30;
    for (int d = pix; d < pix + 32; ++d) {
      const int c = T.cost(d, 0, best);
      if (c < best) best = c, P.dp[l] = d;
    }
  }
  // Packed weights: biases, dense weights, then W(0), W(1), ... (the resident prefix is one contiguous copy).
  int off = 0;
  for (int l = 0; l < L; ++l) P.gb[l] = off, off += round_up(P.cout[l], 4);
  P.gwd = off;
  off += round_up(P.cout[L - 1] * (P.hin[L - 1] / 2) * (P.hin[L - 1] / 2), 4);
  for (int l = 0; l < L; ++l) P.gw[l] = off, off += kTaps * P.cin[l] * P.wp[l];
  P.packed_floats = off;
  // Activations.
  int s = 0;
  P.off_x = s;
  s += round_up(Net::in_c * P.cp[0], 32);
  for (int g = 1; g < L; ++g) P.off_s[g] = s, s += round_up(P.cout[g - 1] * P.cp[g], 32);
  int buf[2] = {0, 0};
  for (int l = 0; l < L; ++l) {
    const int a = l + 1 < L ? P.cout[l] * P.cp[l + 1] : 0, d = P.cout[l] * P.dp[l];
    const int need = a > d ? a : d;
    if (need > buf[l % 2]) buf[l % 2] = need;
  }
  // Each buffer kDzSlack floats longer than its largest content: the backward's predicated-off reads past its end.
  P.off_buf[0] = s;
  s += round_up(buf[0] + kDzSlack, 32);
  P.off_buf[1] = s;
  s += round_up(buf[1] + kDzSlack, 32);
  P.off_w = s;
  if (!resident) {
    P.smem_floats = s;
    return P;
  }
  // Resident: as many leading layers as fit beside a ring of 2 to ring_slots slots for the rest (layer 0 always: the
  // update reads it); more resident layers before more slots.
  const int budget = smem_budget / 4;
  for (int r = L; r >= 1; --r) {
    const int res_end = r < L ? P.gw[r] : P.packed_floats;
    int chunk = 0;
    for (int l = r; l < L; ++l) chunk = P.cin[l] * P.wp[l] > chunk ? P.cin[l] * P.wp[l] : chunk;
    for (int slots = r < L ? ring_slots : 0; slots >= (r < L ? 2 : 0); --slots) {
      const int ring = slots * chunk, mbar = slots * 2 * 2;  // two 8-byte mbarriers a slot
      const int total = s + round_up(res_end, 32) + ring + round_up(mbar, 4);
      if (total <= budget || (r == 1 && slots == 2)) {
        P.resident_layers = r;
        P.resident_floats = res_end;
        P.ring_slots = slots;
        P.chunk_floats = chunk;
        P.chunks = kTaps * (L - r);
        P.off_ring = s + round_up(res_end, 32);
        P.off_mbar = P.off_ring + ring;
        P.smem_floats = P.off_mbar + round_up(mbar, 4);
        return P;
      }
    }
  }
  return P;
}

// --- tap orders ---
// The backward pass walks the taps by parity class of the pixel they feed — (1,1): 8 6 2 0, (1,0): 7 1, (0,1): 5 3,
// (0,0): 4 — so that a class's accumulators are known at compile time inside a rolled tap loop; the forward pass walks
// them in the reverse order, so that a streamed layer's backward pass starts with the taps its forward pass ended on
// (still in the ring).
EBM_HD constexpr int fwd_tap(int i) {  // position i of the forward pass: 4 3 5 1 7 0 2 6 8
  return i == 0 ? 4 : i < 3 ? 3 + 2 * (i - 1) : i < 5 ? 1 + 6 * (i - 3) : 6 * ((i - 5) / 2) + 2 * ((i - 5) % 2);
}
EBM_HD constexpr int bwd_class_first(int par) { return par == 3 ? 0 : par == 2 ? 4 : par == 1 ? 6 : 8; }
EBM_HD constexpr int bwd_class_taps(int par) { return par == 3 ? 4 : par == 0 ? 1 : 2; }
EBM_HD constexpr int bwd_tap(int par, int e) {  // entry e of parity class par in the backward pass
  const int py = par >> 1, px = par & 1, nx = px ? 2 : 1;
  return 3 * (py ? 2 - 2 * (e / nx) : 1) + (px ? 2 - 2 * (e % nx) : 1);
}

// --- the ring: which load holds a use, which slot holds a load, and when a slot is free ---
//
// Per step the streamed chunks (9 taps of each streamed layer, forward order c = 0..n−1) are used in the order
// c = 0..n−1 (forward pass) then n−1..0 (backward pass): use u is half h = u / n, position i = u % n. A half's first S
// positions reuse the loads of the previous half's last S positions (the ring still holds them, S ≤ n/2), the others
// are new loads, numbered in the order they are needed. A slot is refilled when its load's last use is past (every
// warp has released it), and the refill is the next load in need order: the k-th release (in use order) frees the slot
// of load S + k. Since a turn's reuses are released in the reverse order of their loads, the slots of a half's new
// loads run backwards in odd halves: load J_h + i of half h ≥ 1 (J_h = n + (h−1)(n−S)) goes to slot (n−1−(i mod S))
// mod S when h is odd, i mod S when h is even; half 0's load j to j mod S.
struct RingUse {
  int load;        // the load that holds this use's chunk
  bool last_use;   // no later use reads this load (then the slot may be refilled)
};

EBM_HD int ring_load_of(int64_t u, int n, int S) {
  int64_t h = u / n;
  int i = int(u % n);
  while (h > 0 && i < S) {  // a reuse: the chunk the previous half used at position n−1−i
    h -= 1;
    i = n - 1 - i;
  }
  return h == 0 ? i : int(n + (h - 1) * (n - S) + (i - S));
}

EBM_HD RingUse ring_use(int64_t u, int n, int S, int64_t total_uses) {
  const int i = int(u % n);
  const bool reused_next = i >= n - S && u + n < total_uses;
  return {ring_load_of(u, n, S), !reused_next};
}

// Loads a chain of total_uses uses makes, and which chunk (forward index) load j holds.
EBM_HD int ring_loads(int64_t total_uses, int n, int S) {
  const int64_t halves = total_uses / n;
  return halves <= 0 ? 0 : int(n + (halves - 1) * (n - S));
}
EBM_HD int ring_chunk_of_load(int j, int n, int S) {
  if (j < n) return j;
  const int jj = j - n, h = 1 + jj / (n - S), i = S + jj % (n - S);
  return h % 2 == 0 ? i : n - 1 - i;
}

// The slot load j goes to (above).
EBM_HD int ring_slot_of_load(int j, int n, int S) {
  if (j < n) return j % S;
  const int h = 1 + (j - n) / (n - S), k = ((j - n) % (n - S)) % S;
  return h % 2 == 1 ? (n - 1 - k) % S : k;
}

// How many loads went to load j's slot before it: its full barrier's phase (it completes phase `fill` when load j
// lands), and the empty barrier's phase that says the previous one was released.
EBM_HD int ring_fill_of_load(int j, int n, int S) {
  const int s = ring_slot_of_load(j, n, S);
  auto count = [](int len, int k, int S) { return len > k ? (len - k + S - 1) / S : 0; };  // i < len, i ≡ k (mod S)
  if (j < n) return count(j, s, S);
  const int h = 1 + (j - n) / (n - S), i = (j - n) % (n - S);
  const int k_odd = (n - 1 - s) % S, k_even = s;  // the relative index (mod S) that lands in slot s
  const int odd = h / 2, even = (h - 1) / 2;      // full halves 1 .. h−1 of each parity
  return count(n, s, S) + odd * count(n - S, k_odd, S) + even * count(n - S, k_even, S) +
         count(i, h % 2 == 1 ? k_odd : k_even, S);
}

// The position in release order of a last use u (every half but the last releases its first n − S positions; the
// last, all n): load S + release_index(u) refills the slot u's load frees.
EBM_HD int64_t ring_release_index(int64_t u, int n, int S) { return (u / n) * (n - S) + u % n; }

// --- packing the engine's parameters into the chain's layout ---

// Where the engine keeps a net's parameters (NetSpec's offsets).
struct TiledParamOffsets {
  int64_t w_off[kTiledMaxLayers] = {}, b_off[kTiledMaxLayers] = {}, dense_w_off = 0;
};

// The flat-parameter index packed element i comes from, or −1 for padding (packed as 0).
EBM_HD int64_t tiled_pack_source(const TiledPlan& P, const TiledParamOffsets& o, int i) {
  const int L = P.layers;
  if (i < P.gwd) {
    int l = L - 1;
    while (l > 0 && i < P.gb[l]) --l;
    const int co = i - P.gb[l];
    return co < P.cout[l] ? o.b_off[l] + co : -1;
  }
  if (i < P.gw[0]) {
    const int e = i - P.gwd, n = P.cout[L - 1] * (P.hin[L - 1] / 2) * (P.hin[L - 1] / 2);
    return e < n ? o.dense_w_off + e : -1;
  }
  int l = L - 1;
  while (l > 0 && i < P.gw[l]) --l;
  const int e = i - P.gw[l], wp = P.wp[l], co = e % wp, ci = (e / wp) % P.cin[l], tap = e / (wp * P.cin[l]);
  return co < P.cout[l] ? o.w_off[l] + (int64_t(co) * P.cin[l] + ci) * kTaps + tap : -1;
}

// Whether packed element i is a weight of a TF32 layer: packed already rounded to TF32, as the tensor cores read it.
EBM_HD bool tiled_pack_tf32(const TiledPlan& P, int i) {
  for (int l = 0; l < P.layers; ++l)
    if (P.mma(l) && i >= P.gw[l] && i < P.gw[l] + kTaps * P.cin[l] * P.wp[l]) return true;
  return false;
}

// x rounded to TF32 (cvt.rna.tf32.f32), as a float.
EBM_HD float round_tf32(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  u = tf32_bits_rna(u);
  float r;
  memcpy(&r, &u, 4);
  return r;
}

// --- the chain ---

// Where the chain's normals come from (resolved): step k's normal for element e of image g is philox_normal_at(seed,
// stream, offset + k·blocks_per_step, g·img + e) — the engine's stream, as kernels/langevin_chain_block.hpp draws it.
struct TiledNoise {
  uint64_t seed, stream, offset, blocks_per_step;
};
struct TiledSampler {
  int steps;
  float step_size, noise, grad_clip;
};

// The two normals of elements e, e+1 (e even) of a step's draw: one Philox block, one Box–Muller pair — bit for bit
// philox_normal_at(…, e) and (…, e + 1).
EBM_HD void tiled_normal_pair(const TiledNoise& nz, int step, uint64_t e, float& n0, float& n1) {
  const Philox4 r = philox4x32_10(nz.seed, nz.stream, nz.offset + uint64_t(step) * nz.blocks_per_step + e / 4);
  const bool second = e % 4 != 0;  // elements 2, 3 of the block (selects, not an index: r stays in registers)
  const float radius = sqrtf(-2.0f * logf(u32_to_unit_open0(second ? r.v[2] : r.v[0])));
  const float theta = 6.2831853071795864f * u32_to_unit(second ? r.v[3] : r.v[1]);
  n0 = radius * cosf(theta);
  n1 = radius * sinf(theta);
}

// swish and swish' of z, as kernels/ebm_math.hpp computes them (the same expression: the same bits).
EBM_HD void swish_and_grad(float z, float& a, float& ds) {
  const float s = sigmoidf(z);
  a = z * s;
  ds = s * (1.0f + z * (1.0f - s));
}

#if defined(__CUDACC__)
#define EBM_DEVICE_VAR __device__
#else
#define EBM_DEVICE_VAR
#endif
// A plan where device code can read it: nvcc lets device code use a host constexpr object of class type only inside
// constant expressions, so the phases read this copy (folded to immediates wherever the index is a constant).
template <class Net, int NT, bool kResident, bool kTf32, int kRingSlots, int kSmemBudget>
EBM_DEVICE_VAR constexpr TiledPlan kTiledPlan = make_tiled_plan<Net>(NT, kResident, kRingSlots, kSmemBudget, kTf32);

// The chain for one net: NT threads a block, weights resident (kResident) or read from global memory, layers after the
// first on TF32 tensor cores (kTf32), a ring of kRingSlots slots at most, kSmemBudget bytes of shared memory at most.
template <class Net, int NT, bool kResident, bool kTf32 = false, int kRingSlots = 4, int kSmemBudget = 227 * 1024>
struct TiledChain {
  static constexpr TiledPlan P = make_tiled_plan<Net>(NT, kResident, kRingSlots, kSmemBudget, kTf32);
  EBM_HD static const TiledPlan& plan() {
#if defined(__CUDA_ARCH__)
    return kTiledPlan<Net, NT, kResident, kTf32, kRingSlots, kSmemBudget>;
#else
    return P;
#endif
  }
  template <int l>
  static constexpr bool kMma = P.mma(l);  // layer l on the tensor cores
  // Whether what a phase writes is an mma operand next, and so rounded to TF32 once, there: forward l's output is
  // forward l+1's input (the last layer's dz, backward l's); backward l's dz(l−1) is backward l−1's (layer 0 never
  // runs on the tensor cores).
  template <int l>
  static constexpr bool kRoundForwardOut = l + 1 < Net::layers ? P.mma(l + 1) : P.mma(l);
  template <int l>
  static constexpr bool kRoundBackwardOut = l >= 2 && P.mma(l - 1);
  static constexpr int L = Net::layers;
  static constexpr bool kStreams = kResident && P.resident_layers < L;
  static constexpr int kSlots = kStreams ? P.ring_slots : 0;

  static constexpr bool specialised() {
    for (int l = 0; l < L; ++l)
      if (!P.fwd[l].valid() || !P.bwd[l].valid()) return false;
    for (int l = 0; l + 1 < L; ++l)
      if (P.hin[l + 1] % 2 != 0) return false;
    return P.hin[L - 1] % 2 == 0;
  }
  static constexpr int smem_bytes() { return 4 * P.smem_floats; }
  static_assert(4 * P.smem_floats <= kSmemBudget, "the plan does not fit its shared-memory budget");
  static_assert(P.pitch_model_complete, "the pitch search's access patterns outgrew PitchTerms::kMaxEntries/kMaxInstr");
  // Total ring uses of a chain of `steps` steps.
  EBM_HD static int64_t ring_total(int steps) { return int64_t(steps) * 2 * plan().chunks; }

  // --- helpers ---

  // Sums v[0..V) over the sk lanes of a split (lane bits pgw .. pgw·sk) by halving: after it, split lane s holds the
  // full sums of v[off .. off + V/sk) in v[0 ..), off = (V/sk)·bitreverse(s); with V < sk the last round adds whole
  // values (both lanes then hold the same sum). Fixed pairs, fixed order: deterministic.
  template <int V, int SK, int PGW, class Lane>
  EBM_HD static int reduce_split(Lane& lane, float (&v)[V], int s) {
    reduce_round<V, SK, PGW, 0>(lane, v, s);
    return split_offset(V, SK, s);
  }
  // Round r of reduce_split: partner lane ^ (PGW << r); m = V >> r values still held (all-reduce once m = 1).
  template <int V, int SK, int PGW, int r, class Lane>
  EBM_HD static void reduce_round(Lane& lane, float (&v)[V], int s) {
    if constexpr ((1 << r) < SK) {
      constexpr int m = (V >> r) > 0 ? (V >> r) : 1, h = m / 2;
      const bool upper = (s & (1 << r)) != 0;
      if constexpr (h >= 1) {
        float send[h];
        EBM_UNROLL
        for (int k = 0; k < h; ++k) send[k] = upper ? v[k] : v[k + h];
        lane.shfl_xor_n(send, h, PGW << r);
        EBM_UNROLL
        for (int k = 0; k < h; ++k) v[k] = (upper ? v[k + h] : v[k]) + send[k];
      } else {
        float send[1] = {v[0]};
        lane.shfl_xor_n(send, 1, PGW << r);
        v[0] = v[0] + send[0];
      }
      reduce_round<V, SK, PGW, r + 1>(lane, v, s);
    }
  }

  // Decodes work item `item` of a phase: pixel group, split lane, channel group.
  template <int NPG, int SK, int PGW>
  EBM_HD static void decode(int item, int& pg, int& s, int& cg) {
    const TileItem it = decode_item(item, NPG, SK, PGW);
    pg = it.pg, s = it.s, cg = it.cg;
  }

  // W(l) of one tap: in shared memory (resident layers, or the ring slot of a streamed one) or global.
  template <int l>
  static constexpr bool kWShared = kResident && l < P.resident_layers;
  template <int l>
  static constexpr bool kWStreamed = kResident && l >= P.resident_layers;

  template <class Lane>
  EBM_HD static F4 ldw4(Lane& lane, bool shared, const float* p, int line = __builtin_LINE()) {
    return shared ? lane.lds4(p, line) : lane.ldg4(p, line);
  }
  template <class Lane>
  EBM_HD static float ldw(Lane& lane, bool shared, const float* p, int line = __builtin_LINE()) {
    return shared ? lane.lds(p, line) : lane.ldg(p, line);
  }
  template <class Lane>
  EBM_HD static float ldp(Lane& lane, const float* p, int line = __builtin_LINE()) {  // biases, dense weights
    return kResident ? lane.lds(p, line) : lane.ldg(p, line);
  }

  // The ring: the mbarriers (full[slot], empty[slot]) and the slots.
  EBM_HD static uint64_t* full_bar(float* sm, int slot) {
    return reinterpret_cast<uint64_t*>(sm + plan().off_mbar) + slot;
  }
  EBM_HD static uint64_t* empty_bar(float* sm, int slot) {
    return reinterpret_cast<uint64_t*>(sm + plan().off_mbar) + kSlots + slot;
  }
  // Issues load j of the chain (thread 0): chunk → (layer, tap) → its bytes in the packed weights.
  template <class Lane>
  EBM_HD static void ring_issue(Lane& lane, float* sm, const float* packed, int j) {
    const int c = ring_chunk_of_load(j, plan().chunks, kSlots);
    const int l = plan().resident_layers + c / kTaps, tap = fwd_tap(c % kTaps);
    const int floats = plan().cin[l] * plan().wp[l];
    const int slot = ring_slot_of_load(j, plan().chunks, kSlots);
    lane.mbar_arrive_tx(full_bar(sm, slot), uint32_t(4 * floats));
    lane.bulk_g2s(sm + plan().off_ring + slot * plan().chunk_floats, packed + plan().gw[l] + tap * floats, uint32_t(4 * floats),
                  full_bar(sm, slot));
  }
  // Waits for use u's chunk and returns its slot.
  template <class Lane>
  EBM_HD static const float* ring_acquire(Lane& lane, float* sm, int64_t u) {
    const int n = plan().chunks, j = ring_load_of(u, n, kSlots), slot = ring_slot_of_load(j, n, kSlots);
    lane.mbar_wait(full_bar(sm, slot), ring_fill_of_load(j, n, kSlots) & 1);
    return sm + plan().off_ring + slot * plan().chunk_floats;
  }
  // Layer l's W[tap] ([cin][wp]): for a streamed layer, use u's ring slot (waiting for it to land); else from the
  // layer's home, shared memory (resident) or global.
  template <int l, class Lane>
  EBM_HD static const float* tap_weights(Lane& lane, float* sm, const float* __restrict__ packed, int tap, int64_t u) {
    constexpr int kTapFloats = P.cin[l] * P.wp[l];
    if constexpr (kWStreamed<l>) return ring_acquire(lane, sm, u);
    else return (kWShared<l> ? sm + plan().off_w : packed) + plan().gw[l] + tap * kTapFloats;
  }
  // After use u: on its load's last use every warp says so, and thread 0 — once all have — refills the slot with the
  // next load in need order (after a proxy fence: the slot's generic reads before the bulk copy's async write).
  template <class Lane>
  EBM_HD static void ring_release(Lane& lane, float* sm, const float* packed, int64_t u, int64_t total) {
    const int n = plan().chunks;
    const RingUse r = ring_use(u, n, kSlots, total);
    if (!r.last_use) return;
    const int slot = ring_slot_of_load(r.load, n, kSlots);
    lane.syncwarp();
    if (lane.tid() % 32 == 0) lane.mbar_arrive(empty_bar(sm, slot));
    if (lane.tid() == 0) {
      const int next = kSlots + int(ring_release_index(u, n, kSlots));
      if (next < ring_loads(total, n, kSlots)) {
        lane.mbar_wait(empty_bar(sm, slot), ring_fill_of_load(r.load, n, kSlots) & 1);
        lane.fence_proxy_async();
        ring_issue(lane, sm, packed, next);
      }
    }
  }

  // --- phases ---

  // The backward epilogue of input channel ci, parity par of super-pixel q: dz(l−1) = sum ⊙ s', plain [C][H·W] layout
  // (rounded to TF32 when an mma reads it next).
  template <int l, class Lane>
  EBM_HD static void backward_epilogue(Lane& lane, float* sm, float sum, int ci, int par, int q) {
    constexpr int HIN = P.hin[l], WO = HIN / 2;
    const int iy = 2 * (q / WO) + (par >> 1), ix = 2 * (q % WO) + (par & 1);
    const float sd = lane.lds(sm + plan().off_s[l] + ci * plan().cp[l] + par * plan().pp[l] + q);
    const float v = sum * sd;
    lane.sts(sm + plan().off_buf[(l - 1) % 2] + ci * plan().dp[l - 1] + iy * HIN + ix,
             kRoundBackwardOut<l> ? round_tf32(v) : v);
  }

  // One mma.m16n8k8 into d: A's fragment from a (element (m, k) at a + m·am + k·ak for the lane's m = g, k = t, and
  // the +8 rows, +4 columns), B's from b (element (k, n) at b + k·bk for k = t, t + 4; the lane's column is in b,
  // read only where ok). Operands are TF32 already (bits: no conversion).
  template <bool kWShared, class Lane>
  EBM_HD static void mma_step(Lane& lane, const float* a, int am, int ak, const float* b, int bk, bool ok,
                              float (&d)[4]) {
    const uint32_t af[4] = {bits(ldw(lane, kWShared, a)), bits(ldw(lane, kWShared, a + 8 * am)),
                            bits(ldw(lane, kWShared, a + 4 * ak)), bits(ldw(lane, kWShared, a + 8 * am + 4 * ak))};
    const uint32_t bf[2] = {bits(lane.lds_if(ok, b)), bits(lane.lds_if(ok, b + 4 * bk))};
    lane.mma_tf32(d, af, bf);
  }

  // The warp tiles (16 rows × 8 columns) warp `warp` computes: tiles warp, warp + NW, ... of MT row tiles × the column
  // tiles; has[i] false past the last (warp-uniform).
  template <int MT, int TILES, int TPW>
  EBM_HD static void mma_tiles(int warp, bool (&has)[TPW], int (&m0)[TPW], int (&n0)[TPW]) {
    EBM_UNROLL
    for (int i = 0; i < TPW; ++i) {
      const int tile = warp + (NT / 32) * i;
      has[i] = tile < TILES;
      m0[i] = (tile % MT) * 16;
      n0[i] = (tile / MT) * 8;
    }
  }

  // Forward of layer l on the tensor cores: warp tiles of 16 output channels × 8 pixels (mma.m16n8k8, K = 8 input
  // channels of one tap), a warp's tiles tile = warp, warp + NW, ... (every warp walks every tap: the ring counts
  // on it); operands already TF32 (the packing rounded W, the previous epilogue a); fp32 sums, the fp32 epilogue.
  template <int l, class Lane>
  EBM_HD static void forward_mma(Lane& lane, float* sm, const float* __restrict__ packed, int64_t u0, int64_t total) {
    constexpr int CIN = P.cin[l], COUT = P.cout[l], WO = P.hin[l] / 2, PIX = WO * WO, NW = NT / 32;
    constexpr int MT = COUT / 16, TILES = MT * ((PIX + 7) / 8), TPW = (TILES + NW - 1) / NW;  // row tiles: co
    constexpr int CPI = P.cp[l], PPI = P.pp[l], WP = P.wp[l];
    static_assert(CIN % 16 == 0 && COUT % 16 == 0, "TF32 layers take multiples of 16 input and output channels");
    const float* in = sm + plan().off_buf[(l - 1) % 2];
    const int warp = lane.tid() / 32, g = (lane.tid() % 32) / 4, t = lane.tid() % 4;
    lane.phase(l);
    // Two accumulator chains a tile (K chunks of 8 alternate between them, summed in the epilogue): an mma waits for
    // the previous one into the same accumulators, so one chain would serialise a warp on the tensor core's latency.
    float d[TPW][2][4] = {};
    int m0[TPW], n0[TPW];
    bool has[TPW];
    mma_tiles<MT, TILES, TPW>(warp, has, m0, n0);
    EBM_NO_UNROLL
    for (int tt = 0; tt < kTaps; ++tt) {
      const int tap = fwd_tap(tt), ky = tap / 3, kx = tap % 3, plane = (ky != 1) * 2 + (kx != 1);
      const int shift = (ky == 0 ? -WO : 0) + (kx == 0 ? -1 : 0);
      const float* w = tap_weights<l>(lane, sm, packed, tap, u0 + tt);
      EBM_UNROLL
      for (int i = 0; i < TPW; ++i) {
        if (!has[i]) continue;  // warp-uniform
        const int pix = n0[i] + g;
        const bool inside = pix < PIX;
        const bool ok = inside && (ky != 0 || pix / WO > 0) && (kx != 0 || pix % WO > 0);
        const float* b_src = in + plane * PPI + (inside ? pix + shift : 0);
        EBM_UNROLL
        for (int k0 = 0; k0 < CIN; k0 += 16)
          EBM_UNROLL
          for (int c = 0; c < 2; ++c) {  // A[co][ci] = W[tap][ci][co]; B[ci][pixel] = in[ci][pixel]
            const int kk = k0 + 8 * c;
            mma_step<kWShared<l> || kWStreamed<l>>(lane, w + (kk + t) * WP + m0[i] + g, 1, WP, b_src + (kk + t) * CPI,
                                                   CPI, ok, d[i][c]);
          }
      }
      if constexpr (kWStreamed<l>) ring_release(lane, sm, packed, u0 + tt, total);
    }
    EBM_UNROLL
    for (int i = 0; i < TPW; ++i) {
      if (!has[i]) continue;
      EBM_UNROLL
      for (int r = 0; r < 4; ++r) {
        const int co = m0[i] + g + 8 * (r >> 1), p = n0[i] + 2 * t + (r & 1);
        if (p >= PIX) continue;
        forward_epilogue<l>(lane, sm, packed, d[i][0][r] + d[i][1][r], co, p);
      }
    }
  }

  // The forward epilogue of output (co, p): z = sum + b; a = swish(z) and s' into parity planes, or dz = wd ⊙ swish'(z)
  // for the last layer (rounded to TF32 when an mma reads it next).
  template <int l, class Lane>
  EBM_HD static void forward_epilogue(Lane& lane, float* sm, const float* __restrict__ packed, float sum, int co, int p) {
    constexpr int WO = P.hin[l] / 2, PIX = WO * WO;
    constexpr bool ROUND = kRoundForwardOut<l>;
    const float z = sum + ldp(lane, (kResident ? sm + plan().off_w : packed) + plan().gb[l] + co);
    float a, ds;
    swish_and_grad(z, a, ds);
    if constexpr (l + 1 == L) {
      const float wd = ldp(lane, (kResident ? sm + plan().off_w : packed) + plan().gwd + co * PIX + p);
      const float dz = wd * ds;
      lane.sts(sm + plan().off_buf[l % 2] + co * plan().dp[l] + p, ROUND ? round_tf32(dz) : dz);
    } else {
      const int oy = p / WO, ox = p % WO;
      const int at = co * plan().cp[l + 1] + ((oy & 1) * 2 + (ox & 1)) * plan().pp[l + 1] + (oy >> 1) * (WO / 2) + (ox >> 1);
      lane.sts(sm + plan().off_buf[l % 2] + at, ROUND ? round_tf32(a) : a);
      lane.sts(sm + plan().off_s[l + 1] + at, ds);
    }
  }

  EBM_HD static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
  }

  // Forward of layer l: z = conv(in) + b; a = swish(z), s = swish'(z) into parity planes; the last layer writes
  // dz = wd ⊙ swish'(z) instead. Taps in order 0..8 (a streamed layer's ring uses u0 .. u0 + 8).
  template <int l, class Lane>
  EBM_HD static void forward(Lane& lane, float* sm, const float* __restrict__ packed, int64_t u0, int64_t total) {
    if constexpr (kMma<l>) {
      forward_mma<l>(lane, sm, packed, u0, total);
      return;
    }
    constexpr ChainTiles T = P.fwd[l];
    constexpr int CIN = P.cin[l], COUT = P.cout[l], HIN = P.hin[l], WO = HIN / 2, PIX = WO * WO;
    constexpr int NPG = PIX / T.tp, NCG = COUT / T.tc, ITEMS = NPG * T.sk * NCG, R = ITEMS / NT;
    constexpr int CPI = P.cp[l], PPI = P.pp[l];
    static_assert(ITEMS % NT == 0 && (!kWStreamed<l> || R == 1), "tiles cover the phase exactly");
    const float* in = sm + (l == 0 ? plan().off_x : plan().off_buf[(l - 1) % 2]);
    lane.phase(l);
    for (int r = 0; r < R; ++r) {
      int pg, s, cg;
      decode<NPG, T.sk, T.pgw>(lane.tid() + NT * r, pg, s, cg);
      const int co0 = cg * T.tc;
      int pix[T.tp];
      bool top[T.tp], left[T.tp];
      EBM_UNROLL
      for (int j = 0; j < T.tp; ++j) {
        pix[j] = pg + NPG * j;
        top[j] = pix[j] / WO > 0;
        left[j] = pix[j] % WO > 0;
      }
      float acc[T.tp * T.tc];
      EBM_UNROLL
      for (int k = 0; k < T.tp * T.tc; ++k) acc[k] = 0.0f;
      EBM_NO_UNROLL
      for (int t = 0; t < kTaps; ++t) {
        const int tap = fwd_tap(t), ky = tap / 3, kx = tap % 3, plane = (ky != 1) * 2 + (kx != 1);
        const int shift = (ky == 0 ? -WO : 0) + (kx == 0 ? -1 : 0);
        const float* w = tap_weights<l>(lane, sm, packed, tap, u0 + t);
        const float* src = in + plane * PPI;
        EBM_NO_UNROLL
        for (int m = 0; m < CIN / T.sk; ++m) {
          const int ci = s + T.sk * m;
          F4 wv[T.tc / 4];
          EBM_UNROLL
          for (int q = 0; q < T.tc / 4; ++q) wv[q] = ldw4(lane, kWShared<l> || kWStreamed<l>, w + ci * plan().wp[l] + co0 + 4 * q);
          EBM_UNROLL
          for (int j = 0; j < T.tp; ++j) {
            const bool ok = (ky != 0 || top[j]) && (kx != 0 || left[j]);
            // Off the edge the shifted address is still inside this channel's planes (a plane is ≥ WO + 1 words
            // from the channel's start for the shifted taps), and it keeps the lanes' words consecutive.
            const float a = lane.lds_if(ok, src + ci * CPI + pix[j] + shift);
            EBM_UNROLL
            for (int c = 0; c < T.tc; ++c) acc[j * T.tc + c] = lane.fma(a, wv[c / 4][c % 4], acc[j * T.tc + c]);
          }
        }
        if constexpr (kWStreamed<l>) ring_release(lane, sm, packed, u0 + t, total);
      }
      // v index = j·tc + c; after the split's reduction this thread holds [off, off + V/sk).
      constexpr int V = T.tp * T.tc, MINE = V / T.sk > 0 ? V / T.sk : 1;
      int off = 0;
      if constexpr (T.sk > 1) off = reduce_split<V, T.sk, T.pgw>(lane, acc, s);
      if (V < T.sk && s >= V) continue;  // duplicates of an all-reduced value: one lane writes
      EBM_UNROLL
      for (int k = 0; k < MINE; ++k) {
        const int idx = off + k, j = idx / T.tc, c = idx % T.tc, co = co0 + c, p = pg + NPG * j;
        forward_epilogue<l>(lane, sm, packed, acc[k], co, p);
      }
    }
  }

  // Backward sums of layer l for the thread's tile: acc[(j·4 + parity)·tc + c] = Σ over taps and output channels of
  // w·dz, for input channels ci0 + c of super-pixel sp[j]. Taps class by class (bwd_tap: the ring's backward order).
  template <int l, class Lane, int V>
  EBM_HD static void backward_sums(Lane& lane, float* sm, const float* __restrict__ packed, int64_t u0, int64_t total,
                                   int s, int ci0, const int* sp, float (&acc)[V]) {
    constexpr ChainTiles T = P.bwd[l];
    constexpr int COUT = P.cout[l], WO = P.hin[l] / 2, DP = P.dp[l];
    const float* dz = sm + plan().off_buf[l % 2];
    bool bottom[T.tp], right[T.tp];
    EBM_UNROLL
    for (int j = 0; j < T.tp; ++j) {
      bottom[j] = sp[j] / WO + 1 < WO;
      right[j] = sp[j] % WO + 1 < WO;
    }
    EBM_UNROLL
    for (int k = 0; k < V; ++k) acc[k] = 0.0f;
    EBM_UNROLL
    for (int pi = 0; pi < 4; ++pi) {
      const int par = 3 - pi;  // a constant once unrolled: the accumulators this class feeds
      EBM_NO_UNROLL
      for (int e = 0; e < bwd_class_taps(par); ++e) {
        const int t = bwd_class_first(par) + e, tap = bwd_tap(par, e), ky = tap / 3, kx = tap % 3;
        const int shift = (ky == 0 ? WO : 0) + (kx == 0 ? 1 : 0);
        const float* w = tap_weights<l>(lane, sm, packed, tap, u0 + t);
        EBM_NO_UNROLL
        for (int m = 0; m < COUT / 4 / T.sk; ++m) {
          const int cb = s + T.sk * m;
          float d[T.tp][4];
          EBM_UNROLL
          for (int j = 0; j < T.tp; ++j) {
            const bool ok = (ky != 0 || bottom[j]) && (kx != 0 || right[j]);
            // Off the edge the shifted address stays inside the buffer (kDzSlack floats past its end).
            EBM_UNROLL
            for (int k = 0; k < 4; ++k) d[j][k] = lane.lds_if(ok, dz + (4 * cb + k) * DP + sp[j] + shift);
          }
          EBM_UNROLL
          for (int c = 0; c < T.tc; ++c) {
            const F4 wv = ldw4(lane, kWShared<l> || kWStreamed<l>, w + (ci0 + c) * plan().wp[l] + 4 * cb);
            EBM_UNROLL
            for (int j = 0; j < T.tp; ++j) {
              float& a = acc[(j * 4 + par) * T.tc + c];
              a = lane.fma(d[j][0], wv.x, a);
              a = lane.fma(d[j][1], wv.y, a);
              a = lane.fma(d[j][2], wv.z, a);
              a = lane.fma(d[j][3], wv.w, a);
            }
          }
        }
        if constexpr (kWStreamed<l>) ring_release(lane, sm, packed, u0 + t, total);
      }
    }
  }

  // Backward of layer l ≥ 1 on the tensor cores: per parity class par, D_par[ci][q] = Σ over its taps and output
  // channels of W[tap][ci][co]·dz[co][q + neighbour] — warp tiles of 16 input channels × 8 super-pixels, four classes'
  // accumulators a tile; then dz(l−1) = D ⊙ s', rounded to TF32 when backward l−1 is on the tensor cores too.
  template <int l, class Lane>
  EBM_HD static void backward_mma(Lane& lane, float* sm, const float* __restrict__ packed, int64_t u0, int64_t total) {
    constexpr int CIN = P.cin[l], COUT = P.cout[l], HIN = P.hin[l], WO = HIN / 2, Q = WO * WO, NW = NT / 32;
    constexpr int MT = CIN / 16, TILES = MT * ((Q + 7) / 8), TPW = (TILES + NW - 1) / NW;
    constexpr int DP = P.dp[l], WP = P.wp[l];
    static_assert(CIN % 16 == 0 && COUT % 16 == 0, "TF32 layers take multiples of 16 input and output channels");
    const float* dz = sm + plan().off_buf[l % 2];
    const int warp = lane.tid() / 32, g = (lane.tid() % 32) / 4, t = lane.tid() % 4;
    lane.phase(L + (L - 1 - l));
    float d[TPW][4][2][4] = {};  // a tile's four parity classes, two accumulator chains each (see forward_mma)
    int m0[TPW], n0[TPW];
    bool has[TPW];
    mma_tiles<MT, TILES, TPW>(warp, has, m0, n0);  // row tiles: ci
    EBM_UNROLL
    for (int pi = 0; pi < 4; ++pi) {
      const int par = 3 - pi;
      EBM_NO_UNROLL
      for (int e = 0; e < bwd_class_taps(par); ++e) {
        const int tt = bwd_class_first(par) + e, tap = bwd_tap(par, e), ky = tap / 3, kx = tap % 3;
        const int shift = (ky == 0 ? WO : 0) + (kx == 0 ? 1 : 0);
        const float* w = tap_weights<l>(lane, sm, packed, tap, u0 + tt);
        EBM_UNROLL
        for (int i = 0; i < TPW; ++i) {
          if (!has[i]) continue;  // warp-uniform
          const int q = n0[i] + g;
          const bool inside = q < Q;
          const bool ok = inside && (ky != 0 || q / WO + 1 < WO) && (kx != 0 || q % WO + 1 < WO);
          const float* b_src = dz + (inside ? q + shift : 0);
          EBM_UNROLL
          for (int k0 = 0; k0 < COUT; k0 += 16)
            EBM_UNROLL
            for (int h = 0; h < 2; ++h) {  // A[ci][co] = W[tap][ci][co]; B[co][super-pixel] = dz[co][q + shift]
              const int kk = k0 + 8 * h;
              mma_step<kWShared<l> || kWStreamed<l>>(lane, w + (m0[i] + g) * WP + kk + t, WP, 1, b_src + (kk + t) * DP,
                                                     DP, ok, d[i][par][h]);
            }
        }
        if constexpr (kWStreamed<l>) ring_release(lane, sm, packed, u0 + tt, total);
      }
    }
    EBM_UNROLL
    for (int i = 0; i < TPW; ++i) {
      if (!has[i]) continue;
      EBM_UNROLL
      for (int par = 0; par < 4; ++par)
        EBM_UNROLL
        for (int r = 0; r < 4; ++r) {
          const int ci = m0[i] + g + 8 * (r >> 1), q = n0[i] + 2 * t + (r & 1);
          if (q >= Q) continue;
          backward_epilogue<l>(lane, sm, d[i][par][0][r] + d[i][par][1][r], ci, par, q);
        }
    }
  }

  // Backward of layer l ≥ 1: dz(l−1) = convᵀ(dz(l)) ⊙ s_{l−1}.
  template <int l, class Lane>
  EBM_HD static void backward(Lane& lane, float* sm, const float* __restrict__ packed, int64_t u0, int64_t total) {
    if constexpr (kMma<l>) {
      backward_mma<l>(lane, sm, packed, u0, total);
      return;
    }
    constexpr ChainTiles T = P.bwd[l];
    constexpr int CIN = P.cin[l], HIN = P.hin[l], WO = HIN / 2, PIX = WO * WO;
    constexpr int NPG = PIX / T.tp, NCG = CIN / T.tc, ITEMS = NPG * T.sk * NCG, R = ITEMS / NT;
    static_assert(ITEMS % NT == 0 && (!kWStreamed<l> || R == 1), "tiles cover the phase exactly");
    lane.phase(L + (L - 1 - l));
    for (int r = 0; r < R; ++r) {
      int pg, s, cg;
      decode<NPG, T.sk, T.pgw>(lane.tid() + NT * r, pg, s, cg);
      int sp[T.tp];
      EBM_UNROLL
      for (int j = 0; j < T.tp; ++j) sp[j] = pg + NPG * j;
      constexpr int V = T.tp * 4 * T.tc;
      float acc[V];
      backward_sums<l>(lane, sm, packed, u0, total, s, cg * T.tc, sp, acc);
      constexpr int MINE = V / T.sk > 0 ? V / T.sk : 1;
      int off = 0;
      if constexpr (T.sk > 1) off = reduce_split<V, T.sk, T.pgw>(lane, acc, s);
      if (V < T.sk && s >= V) continue;
      EBM_UNROLL
      for (int k = 0; k < MINE; ++k) {
        const int idx = off + k, j = idx / (4 * T.tc), par = (idx / T.tc) % 4, ci = cg * T.tc + idx % T.tc;
        backward_epilogue<l>(lane, sm, acc[k], ci, par, pg + NPG * j);
      }
    }
  }

  // Layer 0's backward and the Langevin update of step k: x ← descend(x, dfdx); then step k+1's perturb, or the store
  // to global memory after the last step. A thread's share after the split is whole pixel pairs (ix even, ix + 1):
  // one Philox block and one Box–Muller pair give both normals.
  template <class Lane>
  EBM_HD static void update(Lane& lane, float* sm, const float* __restrict__ packed, float* xg, int64_t image,
                            int step, const TiledSampler& p, const TiledNoise& nz) {
    constexpr ChainTiles T = P.bwd[0];
    constexpr int C0 = Net::in_c, HIN = Net::h0, WO = HIN / 2, PIX = WO * WO;
    constexpr int NPG = PIX / T.tp, NCG = C0 / T.tc, ITEMS = NPG * T.sk * NCG, R = ITEMS / NT;
    constexpr int V = T.tp * 4 * T.tc, MINE = V / T.sk;
    static_assert(ITEMS % NT == 0 && !kWStreamed<0>, "tiles cover the phase exactly");
    static_assert(V >= T.sk && MINE % (2 * T.tc) == 0, "a thread's share of the update is whole pixel pairs");
    const bool last = step + 1 == p.steps, noisy = p.noise > 0.0f && !last;
    lane.phase(2 * L - 1);
    for (int r = 0; r < R; ++r) {
      int pg, s, cg;
      decode<NPG, T.sk, T.pgw>(lane.tid() + NT * r, pg, s, cg);
      int sp[T.tp];
      EBM_UNROLL
      for (int j = 0; j < T.tp; ++j) sp[j] = pg + NPG * j;
      float acc[V];
      backward_sums<0>(lane, sm, packed, 0, 0, s, cg * T.tc, sp, acc);
      int off = 0;
      if constexpr (T.sk > 1) off = reduce_split<V, T.sk, T.pgw>(lane, acc, s);
      EBM_UNROLL
      for (int k = 0; k < MINE; k += 2 * T.tc) {  // (px = 0, px = 1) of one row, for tc channels
        const int idx = off + k, j = idx / (4 * T.tc), py = (idx / (2 * T.tc)) % 2;
        const int q = pg + NPG * j, iy = 2 * (q / WO) + py, ix = 2 * (q % WO);
        EBM_UNROLL
        for (int c = 0; c < T.tc; ++c) {
          const int ci = cg * T.tc + c;
          float* x0 = sm + plan().off_x + ci * plan().cp[0] + (2 * py) * plan().pp[0] + q;
          float* x1 = x0 + plan().pp[0];
          float v0 = langevin_descend(lane.lds(x0), acc[k + c], p.step_size, p.grad_clip);
          float v1 = langevin_descend(lane.lds(x1), acc[k + T.tc + c], p.step_size, p.grad_clip);
          const int e = (ci * HIN + iy) * HIN + ix;
          if (noisy) {
            float n0, n1;
            tiled_normal_pair(nz, step + 1, uint64_t(image) * uint64_t(Net::img) + uint64_t(e), n0, n1);
            v0 = langevin_perturb(v0, p.noise, n0);
            v1 = langevin_perturb(v1, p.noise, n1);
          }
          if (last) {
            lane.stg(xg + e, v0);
            lane.stg(xg + e + 1, v1);
          } else {
            lane.sts(x0, v0);
            lane.sts(x1, v1);
          }
        }
      }
    }
  }

  // Load: x (global [C0, H, W]) → parity planes, with step 0's perturb. One Philox block per 4 pixels.
  template <class Lane>
  EBM_HD static void load(Lane& lane, float* sm, const float* xg, int64_t image, const TiledSampler& p,
                          const TiledNoise& nz) {
    constexpr int HIN = Net::h0, WO = HIN / 2, GROUPS = Net::img / 4;
    const bool noisy = p.noise > 0.0f;
    lane.phase(-1);
    for (int g = lane.tid(); g < GROUPS; g += NT) {
      const int e0 = 4 * g;
      float n4[4] = {0, 0, 0, 0};
      if (noisy)
        philox_normal4(nz.seed, nz.stream, nz.offset + (uint64_t(image) * uint64_t(Net::img) + uint64_t(e0)) / 4, n4);
      EBM_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int e = e0 + i, c = e / (HIN * HIN), iy = (e / HIN) % HIN, ix = e % HIN;
        const float v = lane.ld(xg + e);  // not the read-only path: the update writes x back at the end
        lane.sts(sm + plan().off_x + c * plan().cp[0] + ((iy & 1) * 2 + (ix & 1)) * plan().pp[0] + (iy >> 1) * WO + (ix >> 1),
                 noisy ? langevin_perturb(v, p.noise, n4[i]) : v);
      }
    }
  }

  template <int l, class Lane>
  EBM_HD static void forward_all(Lane& lane, float* sm, const float* packed, int64_t u, int64_t total) {
    forward<l>(lane, sm, packed, u, total);
    lane.sync();
    if constexpr (l + 1 < L) forward_all<l + 1>(lane, sm, packed, kWStreamed<l> ? u + kTaps : u, total);
  }
  template <int l, class Lane>
  EBM_HD static void backward_all(Lane& lane, float* sm, const float* packed, int64_t u, int64_t total) {
    backward<l>(lane, sm, packed, u, total);
    lane.sync();
    if constexpr (l > 1) backward_all<l - 1>(lane, sm, packed, kWStreamed<l> ? u + kTaps : u, total);
  }

  // The whole chain for one image: the kernel's body. sm: smem_bytes() of shared memory; packed: the packed weights
  // (P.packed_floats, 16-byte aligned); xg: the image [C0, H, W], row `image` of the batch (for the noise).
  template <class Lane>
  EBM_HD static void run(Lane& lane, float* sm, const float* __restrict__ packed, float* xg, int64_t image,
                         const TiledSampler& p, const TiledNoise& nz) {
    static_assert(specialised(), "no tiles for this net at this block size");
    const int64_t total = ring_total(p.steps);
    if constexpr (kResident) {  // biases, dense weights and the resident layers' W: one copy for the whole chain
      lane.phase(-2);
      for (int i = lane.tid(); i < plan().resident_floats / 4; i += NT)
        lane.sts4(sm + plan().off_w + 4 * i, lane.ldg4(packed + 4 * i));
    }
    if constexpr (kStreams) {
      if (lane.tid() == 0) {
        for (int s = 0; s < kSlots; ++s) {
          lane.mbar_init(full_bar(sm, s), 1);
          lane.mbar_init(empty_bar(sm, s), NT / 32);
        }
        lane.mbar_fence_init();
        const int first = ring_loads(total, plan().chunks, kSlots) < kSlots ? ring_loads(total, plan().chunks, kSlots) : kSlots;
        for (int j = 0; j < first; ++j) ring_issue(lane, sm, packed, j);
      }
    }
    load(lane, sm, xg, image, p, nz);
    lane.sync();
    for (int step = 0; step < p.steps; ++step) {
      const int64_t u = int64_t(step) * 2 * plan().chunks;
      forward_all<0>(lane, sm, packed, u, total);
      if constexpr (L > 1) backward_all<L - 1>(lane, sm, packed, u + P.chunks, total);
      update(lane, sm, packed, xg, image, step, p, nz);
      if (step + 1 < p.steps) lane.sync();
    }
  }
};

}  // namespace ebm
