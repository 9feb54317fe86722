#include "tests/block_sim.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <stdexcept>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EBM_SIM_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define EBM_SIM_ASAN 1
#endif
#ifdef EBM_SIM_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace ebm::sim {

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("block_sim: " + what); }

// getcontext/makecontext and swapcontext return twice; kept in functions of their own so that no local of the
// scheduler lives across them (GCC's -Wclobbered).
[[gnu::noinline]] void prepare_context(ucontext_t* ctx, char* stack, size_t bytes, void (*fn)(), unsigned lo,
                                       unsigned hi, int tid) {
  getcontext(ctx);
  ctx->uc_stack.ss_sp = stack;
  ctx->uc_stack.ss_size = bytes;
  ctx->uc_link = nullptr;
  makecontext(ctx, fn, 3, lo, hi, tid);
}

// Switches from `save` to `to`; `to_stack`/`to_bytes` name the stack switched to (ASan: null for the scheduler's),
// `leaving` says the current fiber will not be resumed.
[[gnu::noinline]] void switch_context(ucontext_t* save, ucontext_t* to, const void* to_stack, size_t to_bytes,
                                      bool leaving) {
#ifdef EBM_SIM_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(leaving ? nullptr : &fake, to_stack, to_bytes);
  swapcontext(save, to);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  (void)to_stack, (void)to_bytes, (void)leaving;
  swapcontext(save, to);
#endif
}

}  // namespace

double PhaseStats::balance() const {
  if (nthreads <= 0 || fma <= 0) return 1.0;
  return double(fma_thread_max) / (double(fma) / double(nthreads));
}

// --- SimLane ---

int SimLane::nthreads() const { return sim_->opt_.nthreads; }

void SimLane::record(Op op, const void* p, int bytes, int line) {
  BlockSim::Fiber& f = sim_->fibers_[size_t(tid_)];
  if (op == Op::kFma) ++f.fma_interval;
  if (!sim_->opt_.record) return;
  uint64_t addr = reinterpret_cast<uint64_t>(p);
  if (op == Op::kLds || op == Op::kSts) addr = sim_->shared_offset(p, bytes, line);
  const int occ = f.occ[{line, f.key}]++;
  f.events.push_back({addr, line, f.key, occ, op, uint8_t(bytes)});
}

void SimLane::block(int line) {
  sim_->fibers_[size_t(tid_)].wait_line = line;
  sim_->yield(tid_);
}

float SimLane::lds(const float* p, int line) {
  if (!sim_->opt_.record) sim_->shared_offset(p, 4, line);
  record(Op::kLds, p, 4, line);
  return *p;
}
float SimLane::lds_if(bool pred, const float* p, int line) {
  if (!sim_->opt_.record) sim_->shared_offset(p, 4, line);
  record(Op::kLds, p, 4, line);
  return pred ? *p : 0.0f;
}
F4 SimLane::lds4(const float* p, int line) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail("lds4 of an address not 16-byte aligned, line " + std::to_string(line));
  if (!sim_->opt_.record) sim_->shared_offset(p, 16, line);
  record(Op::kLds, p, 16, line);
  return {p[0], p[1], p[2], p[3]};
}
void SimLane::sts(float* p, float v, int line) {
  if (!sim_->opt_.record) sim_->shared_offset(p, 4, line);
  record(Op::kSts, p, 4, line);
  *p = v;
}
void SimLane::sts4(float* p, F4 v, int line) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail("sts4 of an address not 16-byte aligned, line " + std::to_string(line));
  if (!sim_->opt_.record) sim_->shared_offset(p, 16, line);
  record(Op::kSts, p, 16, line);
  p[0] = v.x, p[1] = v.y, p[2] = v.z, p[3] = v.w;
}
float SimLane::ldg(const float* p, int line) {
  record(Op::kLdg, p, 4, line);
  return *p;
}
F4 SimLane::ldg4(const float* p, int line) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail("ldg4 of an address not 16-byte aligned, line " + std::to_string(line));
  record(Op::kLdg, p, 16, line);
  return {p[0], p[1], p[2], p[3]};
}
void SimLane::stg(float* p, float v, int line) {
  record(Op::kStg, p, 4, line);
  *p = v;
}
float SimLane::fma(float a, float b, float c, int line) {
  record(Op::kFma, nullptr, 0, line);
  return std::fma(a, b, c);
}

void SimLane::shfl_xor_n(float* v, int n, int mask, int line) {
  record(Op::kShfl, nullptr, 0, line);
  BlockSim::Fiber& f = sim_->fibers_[size_t(tid_)];
  f.wait = BlockSim::Wait::kWarp;
  f.warp = {Op::kShfl, line, n, mask, v, nullptr, nullptr};
  block(line);
}
void SimLane::syncwarp(int line) {
  BlockSim::Fiber& f = sim_->fibers_[size_t(tid_)];
  f.wait = BlockSim::Wait::kWarp;
  f.warp = {Op::kWarpSync, line, 0, 0, nullptr, nullptr, nullptr};
  block(line);
}
void SimLane::sync(int line) {
  sim_->fibers_[size_t(tid_)].wait = BlockSim::Wait::kBarrier;
  block(line);
}
void SimLane::phase(int id) { sim_->fibers_[size_t(tid_)].phase = id; }
void SimLane::key(int k) { sim_->fibers_[size_t(tid_)].key = k; }

void SimLane::mbar_init(uint64_t* bar, int count) {
  sim_->shared_offset(bar, 8, 0);
  if (reinterpret_cast<uintptr_t>(bar) % 8 != 0) fail("mbarrier not 8-byte aligned");
  BlockSim::Mbar& m = sim_->mbars_[bar];
  m = {count, count, 0, 0};
}
void SimLane::mbar_arrive(uint64_t* bar, int line) {
  BlockSim::Mbar& m = sim_->mbar(bar);
  if (--m.pending < 0) fail("mbarrier over-arrived at line " + std::to_string(line));
  sim_->complete_if_done(m);
}
void SimLane::mbar_arrive_tx(uint64_t* bar, uint32_t bytes, int line) {
  BlockSim::Mbar& m = sim_->mbar(bar);
  m.tx += bytes;
  if (--m.pending < 0) fail("mbarrier over-arrived at line " + std::to_string(line));
  sim_->complete_if_done(m);
}
void SimLane::mbar_wait(uint64_t* bar, int parity, int line) {
  ++sim_->mbar_waits_;
  BlockSim::Mbar& m = sim_->mbar(bar);
  if ((m.phase & 1) != parity) return;  // the phase of that parity has completed
  BlockSim::Fiber& f = sim_->fibers_[size_t(tid_)];
  f.wait = BlockSim::Wait::kMbar;
  f.mbar = bar;
  f.mbar_parity = parity;
  block(line);
}
void SimLane::bulk_g2s(float* dst, const float* src, uint32_t bytes, uint64_t* bar, int line) {
  if (bytes % 16 != 0 || reinterpret_cast<uintptr_t>(dst) % 16 != 0 || reinterpret_cast<uintptr_t>(src) % 16 != 0)
    fail("cp.async.bulk needs 16-byte sizes and addresses, line " + std::to_string(line));
  sim_->shared_offset(dst, int(bytes), line);
  sim_->mbar(bar);
  // Until it completes, the destination holds nothing a thread may read.
  std::fill(dst, dst + bytes / 4, std::numeric_limits<float>::quiet_NaN());
  sim_->copies_.push_back({dst, src, bytes, bar});
}

uint32_t SimLane::tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return tf32_bits_rna(u);
}

void SimLane::mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], int line) {
  record(Op::kMma, nullptr, 0, line);
  BlockSim::Fiber& f = sim_->fibers_[size_t(tid_)];
  f.wait = BlockSim::Wait::kWarp;
  f.warp = {Op::kMma, line, 0, 0, d, a, b};
  block(line);
}

// --- BlockSim ---

BlockSim::BlockSim(SimOptions o) : opt_(o) {
  if (o.nthreads <= 0 || o.nthreads % 32 != 0) fail("a block is whole warps");
  fibers_.resize(size_t(o.nthreads));
  lanes_.resize(size_t(o.nthreads));
  fma_count_.assign(size_t(o.nthreads), 0);
  for (int t = 0; t < o.nthreads; ++t) {
    lanes_[size_t(t)].sim_ = this;
    lanes_[size_t(t)].tid_ = t;
  }
}

BlockSim::~BlockSim() = default;

uint64_t BlockSim::shared_offset(const void* p, int bytes, int line) const {
  const char* c = static_cast<const char*>(p);
  const char* base = reinterpret_cast<const char*>(smem_);
  if (c < base || c + bytes > base + smem_floats_ * 4)
    fail("shared access outside the block's shared memory at line " + std::to_string(line));
  return uint64_t(c - base);
}

BlockSim::Mbar& BlockSim::mbar(const uint64_t* bar) {
  auto it = mbars_.find(bar);
  if (it == mbars_.end()) fail("mbarrier used before mbar_init");
  return it->second;
}

void BlockSim::complete_if_done(Mbar& m) {
  if (m.pending == 0 && m.tx == 0) {
    ++m.phase;
    m.pending = m.expected;
  }
}

void BlockSim::trampoline(unsigned lo, unsigned hi, int tid) {
  BlockSim* s = reinterpret_cast<BlockSim*>((uintptr_t(hi) << 32) | uintptr_t(lo));
#ifdef EBM_SIM_ASAN
  // The stack switched from is the scheduler's: its bounds are what the switches back to it name.
  __sanitizer_finish_switch_fiber(nullptr, &s->sched_stack_, &s->sched_stack_bytes_);
#endif
  (*s->body_)(s->lanes_[size_t(tid)]);
  s->fibers_[size_t(tid)].wait = Wait::kDone;
  s->yield(tid);  // never resumed
}

void BlockSim::yield(int tid) {
  Fiber& f = fibers_[size_t(tid)];
  switch_context(&f.ctx, &sched_, sched_stack_, sched_stack_bytes_, f.wait == Wait::kDone);
}

std::string BlockSim::where() const {
  std::map<std::string, std::vector<int>> at;
  for (size_t t = 0; t < fibers_.size(); ++t) {
    const Fiber& f = fibers_[t];
    std::string w;
    switch (f.wait) {
      case Wait::kDone: w = "returned"; break;
      case Wait::kBarrier: w = "block barrier at line " + std::to_string(f.wait_line); break;
      case Wait::kWarp: w = "warp operation at line " + std::to_string(f.wait_line); break;
      case Wait::kMbar: w = "mbarrier wait at line " + std::to_string(f.wait_line); break;
      case Wait::kRun: w = "running"; break;
    }
    at[w].push_back(int(t));
  }
  std::string s;
  for (const auto& [w, ts] : at)
    s += "\n  " + std::to_string(ts.size()) + " thread(s) (first " + std::to_string(ts.front()) + "): " + w;
  return s;
}

// Called with every fiber blocked or done: releases what can go on. False when nothing can.
bool BlockSim::resolve() {
  bool progress = false;
  // Warp operations: all 32 lanes at the same one.
  const int warps = opt_.nthreads / 32;
  for (int w = 0; w < warps; ++w) {
    Fiber* lanes[32];
    int at_op = 0;
    for (int l = 0; l < 32; ++l) {
      lanes[l] = &fibers_[size_t(w * 32 + l)];
      at_op += lanes[l]->wait == Wait::kWarp;
    }
    if (at_op == 0) continue;
    if (at_op != 32) continue;  // the others are blocked elsewhere: resolved later, or a deadlock
    const WarpOp& op0 = lanes[0]->warp;
    for (int l = 1; l < 32; ++l) {
      const WarpOp& o = lanes[l]->warp;
      if (o.op != op0.op || o.line != op0.line || o.n != op0.n || o.mask != op0.mask)
        fail("lanes of warp " + std::to_string(w) + " meet at different warp operations (lines " +
             std::to_string(op0.line) + " and " + std::to_string(o.line) + ")");
    }
    if (op0.op == Op::kShfl) {
      std::vector<float> got(size_t(32 * op0.n));
      for (int l = 0; l < 32; ++l)
        for (int i = 0; i < op0.n; ++i) got[size_t(l * op0.n + i)] = lanes[l ^ op0.mask]->warp.v[i];
      for (int l = 0; l < 32; ++l)
        for (int i = 0; i < op0.n; ++i) lanes[l]->warp.v[i] = got[size_t(l * op0.n + i)];
    } else if (op0.op == Op::kMma) {
      // PTX ISA §9.7.14.5.7 (m16n8k8, .tf32): groupID g = lane >> 2, t = lane % 4.
      //   A 16×8: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4);  B 8×8: b0 (t, g), b1 (t+4, g);
      //   C/D 16×8: c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1).
      float A[16][8], B[8][8], C[16][8];
      auto f = [](uint32_t u) {
        float x;
        std::memcpy(&x, &u, 4);
        return x;
      };
      for (int l = 0; l < 32; ++l) {
        const int g = l >> 2, t = l % 4;
        const WarpOp& o = lanes[l]->warp;
        A[g][t] = f(o.a[0]), A[g + 8][t] = f(o.a[1]), A[g][t + 4] = f(o.a[2]), A[g + 8][t + 4] = f(o.a[3]);
        B[t][g] = f(o.b[0]), B[t + 4][g] = f(o.b[1]);
        C[g][2 * t] = o.v[0], C[g][2 * t + 1] = o.v[1], C[g + 8][2 * t] = o.v[2], C[g + 8][2 * t + 1] = o.v[3];
      }
      // The tensor core's products of TF32 operands are exact in fp32; their sum is rounded once here (the hardware's
      // order and internal width are unspecified: tests of it allow for an fp32 accumulation's rounding).
      float D[16][8];
      for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 8; ++n) {
          double acc = C[m][n];
          for (int k = 0; k < 8; ++k) acc += double(A[m][k]) * double(B[k][n]);
          D[m][n] = float(acc);
        }
      for (int l = 0; l < 32; ++l) {
        const int g = l >> 2, t = l % 4;
        float* d = lanes[l]->warp.v;
        d[0] = D[g][2 * t], d[1] = D[g][2 * t + 1], d[2] = D[g + 8][2 * t], d[3] = D[g + 8][2 * t + 1];
      }
    }
    for (int l = 0; l < 32; ++l) lanes[l]->wait = Wait::kRun;
    progress = true;
  }
  if (progress) return true;
  // Bulk copies land once nothing else can run.
  if (!copies_.empty()) {
    std::vector<Copy> done;
    done.swap(copies_);
    for (const Copy& c : done) std::memcpy(c.dst, c.src, c.bytes);
    for (const Copy& c : done) {
      Mbar& m = mbar(c.bar);
      m.tx -= c.bytes;
      complete_if_done(m);
    }
    progress = true;
  }
  for (Fiber& f : fibers_)
    if (f.wait == Wait::kMbar && (mbar(f.mbar).phase & 1) != f.mbar_parity) {
      f.wait = Wait::kRun;
      progress = true;
    }
  if (progress) return true;
  // A block barrier: every thread there.
  int at_bar = 0, done = 0;
  for (const Fiber& f : fibers_) at_bar += f.wait == Wait::kBarrier, done += f.wait == Wait::kDone;
  if (at_bar > 0 && at_bar == opt_.nthreads) {
    close_interval();
    ++barriers_;
    for (Fiber& f : fibers_) f.wait = Wait::kRun;
    return true;
  }
  if (at_bar > 0 && at_bar + done == opt_.nthreads) fail("a block barrier some threads never reach (they returned)");
  return false;
}

void BlockSim::run(const std::function<void(SimLane&)>& body) {
  body_ = &body;
  const uintptr_t self = reinterpret_cast<uintptr_t>(this);
  for (int t = 0; t < opt_.nthreads; ++t) {
    Fiber& f = fibers_[size_t(t)];
    f.stack.reset(new char[opt_.stack_bytes]);
    f.wait = Wait::kRun;
    f.events.clear();
    f.occ.clear();
    f.fma_interval = 0;
    f.key = -1;
    prepare_context(&f.ctx, f.stack.get(), opt_.stack_bytes, reinterpret_cast<void (*)()>(&BlockSim::trampoline),
                    unsigned(self & 0xffffffffu), unsigned(self >> 32), t);
  }
  for (;;) {
    bool ran = false;
    for (int i = 0; i < opt_.nthreads; ++i) {
      const int t = opt_.descending ? opt_.nthreads - 1 - i : i;
      Fiber& f = fibers_[size_t(t)];
      if (f.wait != Wait::kRun) continue;
      switch_context(&sched_, &f.ctx, f.stack.get(), opt_.stack_bytes, false);
      ran = true;
    }
    bool all_done = true;
    for (const Fiber& f : fibers_) all_done = all_done && f.wait == Wait::kDone;
    if (all_done) break;
    if (!ran && !resolve()) fail("deadlock:" + where());
    if (ran) continue;
  }
  close_interval();
  for (Fiber& f : fibers_) f.stack.reset();
  body_ = nullptr;
}

namespace {

// Wavefronts of one shared access by a warp: the most distinct 4-byte words any bank must deliver; ideal: the
// distinct words / 32.
void shared_wavefronts(const std::vector<std::pair<uint64_t, int>>& acc, int64_t& waves, int64_t& ideal) {
  std::set<uint64_t> words;
  for (const auto& [a, b] : acc)
    for (int k = 0; k < b / 4; ++k) words.insert(a / 4 + uint64_t(k));
  int per_bank[32] = {};
  for (uint64_t w : words) ++per_bank[w % 32];
  waves = *std::max_element(per_bank, per_bank + 32);
  ideal = (int64_t(words.size()) + 31) / 32;
}

}  // namespace

void BlockSim::close_interval() {
  const int phase = fibers_[0].phase;
  PhaseStats& st = stats_[phase];
  st.id = phase;
  st.nthreads = opt_.nthreads;
  ++st.intervals;
  int64_t fmax = 0, fmin = std::numeric_limits<int64_t>::max();
  for (size_t t = 0; t < fibers_.size(); ++t) {
    Fiber& f = fibers_[t];
    fma_count_[t] += f.fma_interval;
    fmax = std::max(fmax, f.fma_interval);
    fmin = std::min(fmin, f.fma_interval);
  }
  st.fma_thread_max += fmax;
  st.fma_thread_min += fmin;
  if (opt_.record) {
    struct Key {
      int line, key, occ;
      bool operator<(const Key& o) const {
        return line != o.line ? line < o.line : key != o.key ? key < o.key : occ < o.occ;
      }
    };
    const int warps = opt_.nthreads / 32;
    for (int w = 0; w < warps; ++w) {
      std::map<Key, std::pair<Op, std::vector<std::pair<uint64_t, int>>>> instr;
      for (int l = 0; l < 32; ++l)
        for (const Event& e : fibers_[size_t(w * 32 + l)].events) {
          auto& in = instr[Key{e.line, e.key, e.occ}];
          in.first = e.op;
          in.second.push_back({e.addr, e.bytes});
          ++st.lane_instr;
        }
      st.warp_instr += int64_t(instr.size());
      for (const auto& [k, in] : instr) {
        const Op op = in.first;
        if (op == Op::kLds || op == Op::kSts) {
          int64_t waves = 0, ideal = 0;
          shared_wavefronts(in.second, waves, ideal);
          const bool load = op == Op::kLds;
          (load ? st.lds : st.sts) += 1;
          (load ? st.lds_wavefronts : st.sts_wavefronts) += waves;
          (load ? st.lds_ideal : st.sts_ideal) += ideal;
          int64_t& worst = load ? st.lds_worst : st.sts_worst;
          if (ideal > 0 && waves / ideal > worst) {
            worst = waves / ideal;
            (load ? st.worst_lds_line : st.worst_sts_line) = k.line;
          }
        } else if (op == Op::kLdg || op == Op::kStg) {
          std::set<uint64_t> sectors;
          for (const auto& [a, b] : in.second)
            for (uint64_t s = a / 32; s <= (a + uint64_t(b) - 1) / 32; ++s) sectors.insert(s);
          (op == Op::kLdg ? st.ldg : st.stg) += 1;
          (op == Op::kLdg ? st.ldg_sectors : st.stg_sectors) += int64_t(sectors.size());
        } else if (op == Op::kShfl) {
          ++st.shfl;
        } else if (op == Op::kMma) {
          ++st.mma;
        } else if (op == Op::kFma) {
          st.fma += int64_t(in.second.size());
          ++st.fma_warp;
        }
      }
    }
  } else {
    for (const Fiber& f : fibers_) st.fma += f.fma_interval;
  }
  for (Fiber& f : fibers_) {
    f.events.clear();
    f.occ.clear();
    f.fma_interval = 0;
    f.key = -1;
  }
}

}  // namespace ebm::sim
