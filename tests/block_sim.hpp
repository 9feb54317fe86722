// One CUDA thread block on the CPU, for kernels written against the Lane interface (kernels/chain_lane.hpp): every
// thread is a fiber (ucontext) that runs the kernel's body until it reaches something that needs other threads — a
// block barrier, a warp shuffle or __syncwarp, an mma, an mbarrier wait — and the scheduler resumes the fibers that
// can go on, in ascending or descending thread order. Bulk copies are asynchronous as on the GPU: their destination
// reads as NaN from the issue until the copy completes, which is only once no thread can run without it, so a read
// that does not wait for its mbarrier, or a refill that overwrites what a thread still reads, shows up as NaN in the
// result. A state with threads blocked and nothing to resolve is a deadlock: run() throws, naming where each thread
// waits. Warp operations check that all 32 lanes take part.
//
// With recording on, every access through the Lane is recorded and measured per phase (the kernel marks phases with
// lane.phase(id)) and per warp: the lanes of a warp that reach the same source line for the same time in a phase run
// one warp instruction (what a GPU issues under divergence: SIMT efficiency = lane instructions / (32 · warp
// instructions)); a shared access takes as many wavefronts as the most distinct 4-byte words any of the 32 banks must
// deliver; a global access touches distinct 32-byte sectors. These are the numbers that decide a kernel's speed on the
// GPU, measured from the code the GPU runs.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/chain_lane.hpp"  // F4, tf32_bits_rna

namespace ebm::sim {

enum class Op : uint8_t { kLds, kSts, kLdg, kStg, kShfl, kFma, kMma, kWarpSync, kMbar, kBulk };

struct Event {
  uint64_t addr;  // byte address (shared: offset from the block's shared memory)
  int32_t line, key, occ;
  Op op;
  uint8_t bytes;
};

// One phase of a kernel (every interval between block barriers that thread 0 spent in phase `id`), summed over warps.
struct PhaseStats {
  int id = 0;
  int64_t intervals = 0;                        // block-barrier intervals that made up the phase
  int64_t warp_instr = 0, lane_instr = 0;       // all recorded operations
  int64_t lds = 0, lds_wavefronts = 0, lds_ideal = 0, lds_worst = 0;  // worst: most wavefronts one LDS took / ideal
  int64_t sts = 0, sts_wavefronts = 0, sts_ideal = 0, sts_worst = 0;
  int64_t ldg = 0, ldg_sectors = 0, stg = 0, stg_sectors = 0;
  int64_t shfl = 0, mma = 0, fma = 0;           // warp instructions (fma: lane multiply-adds, mma: warp mmas)
  int64_t fma_warp = 0;                         // warp FFMA instructions (with inactive lanes)
  int64_t fma_thread_max = 0, fma_thread_min = 0;  // per thread, over the phase
  int worst_lds_line = 0, worst_sts_line = 0;   // where the worst shared access is
  double simt() const { return warp_instr ? double(lane_instr) / (32.0 * double(warp_instr)) : 1.0; }
  double lds_ways() const { return lds_ideal ? double(lds_wavefronts) / double(lds_ideal) : 1.0; }
  double balance() const;                        // max / mean multiply-adds a thread
  int64_t nthreads = 0;
};

// Global memory for a simulated kernel, aligned as cudaMalloc aligns it (256 bytes), so that the 32-byte sectors an
// access touches are counted as on a GPU. (A std::vector is 16-byte aligned: the count would gain or lose a sector with
// where the heap put the buffer, and a measurement would change with the tests that ran before it.)
class GlobalMemory {
 public:
  explicit GlobalMemory(const std::vector<float>& v) : blocks_((v.size() + 63) / 64), n_(v.size()) {
    std::copy(v.begin(), v.end(), data());
  }
  float* data() { return blocks_.empty() ? nullptr : blocks_[0].f; }
  const float* data() const { return blocks_.empty() ? nullptr : blocks_[0].f; }
  std::vector<float> values() const { return std::vector<float>(data(), data() + n_); }

 private:
  struct alignas(256) Block {
    float f[64];
  };
  std::vector<Block> blocks_;
  size_t n_;
};

class BlockSim;

// One thread's Lane (kernels/chain_lane.hpp) on the CPU.
class SimLane {
 public:
  int tid() const { return tid_; }
  int nthreads() const;

  float lds(const float* p, int line = __builtin_LINE());
  float lds_if(bool pred, const float* p, int line = __builtin_LINE());
  F4 lds4(const float* p, int line = __builtin_LINE());
  void sts(float* p, float v, int line = __builtin_LINE());
  void sts4(float* p, F4 v, int line = __builtin_LINE());
  float ldg(const float* p, int line = __builtin_LINE());
  float ld(const float* p, int line = __builtin_LINE()) { return ldg(p, line); }
  F4 ldg4(const float* p, int line = __builtin_LINE());
  void stg(float* p, float v, int line = __builtin_LINE());
  float fma(float a, float b, float c, int line = __builtin_LINE());
  void shfl_xor_n(float* v, int n, int mask, int line = __builtin_LINE());
  void syncwarp(int line = __builtin_LINE());
  void sync(int line = __builtin_LINE());
  void phase(int id);
  void key(int k);

  void mbar_init(uint64_t* bar, int count);
  void mbar_fence_init() {}
  void fence_proxy_async() {}  // the simulator has one proxy; a bulk copy's destination is NaN until it lands
  void mbar_arrive(uint64_t* bar, int line = __builtin_LINE());
  void mbar_arrive_tx(uint64_t* bar, uint32_t bytes, int line = __builtin_LINE());
  void mbar_wait(uint64_t* bar, int parity, int line = __builtin_LINE());
  void bulk_g2s(float* dst, const float* src, uint32_t bytes, uint64_t* bar, int line = __builtin_LINE());

  static uint32_t tf32(float x);
  void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], int line = __builtin_LINE());

 private:
  friend class BlockSim;
  void record(Op op, const void* p, int bytes, int line);
  void block(int line);
  BlockSim* sim_ = nullptr;
  int tid_ = 0;
};

struct SimOptions {
  int nthreads = 256;
  bool descending = false;  // resume runnable threads from the highest index down
  bool record = false;      // measure (PhaseStats); costs time and memory
  size_t stack_bytes = 256 << 10;
};

class BlockSim {
 public:
  explicit BlockSim(SimOptions o);
  ~BlockSim();
  BlockSim(const BlockSim&) = delete;
  BlockSim& operator=(const BlockSim&) = delete;

  // The block's shared memory (accesses outside it throw), and every thread's body. run() returns when all threads
  // returned; it throws std::runtime_error on a deadlock, a warp operation some lanes skip, or an out-of-range access.
  void set_shared(float* base, size_t floats) {
    smem_ = base;
    smem_floats_ = floats;
  }
  void run(const std::function<void(SimLane&)>& body);

  // Per phase id, summed over run() calls; barriers counted (block barriers, mbarrier waits) over all.
  const std::map<int, PhaseStats>& stats() const { return stats_; }
  int64_t block_barriers() const { return barriers_; }
  int64_t mbar_waits() const { return mbar_waits_; }
  int64_t fma_of(int tid) const { return fma_count_[size_t(tid)]; }

 private:
  friend class SimLane;
  enum class Wait : uint8_t { kRun, kDone, kBarrier, kWarp, kMbar };
  struct WarpOp {
    Op op = Op::kWarpSync;
    int line = 0, n = 0, mask = 0;
    float* v = nullptr;              // shfl: values; mma: d
    const uint32_t* a = nullptr;     // mma
    const uint32_t* b = nullptr;
  };
  struct Fiber {
    ucontext_t ctx{};
    std::unique_ptr<char[]> stack;
    Wait wait = Wait::kRun;
    int wait_line = 0;
    WarpOp warp;
    const uint64_t* mbar = nullptr;
    int mbar_parity = 0;
    int phase = 0, key = -1;
    std::vector<Event> events;
    std::map<std::pair<int, int>, int> occ;  // per (line, key), this interval
    int64_t fma_interval = 0;
  };
  struct Mbar {
    int expected = 0, pending = 0;
    int64_t tx = 0, phase = 0;
  };
  struct Copy {
    float* dst;
    const float* src;
    uint32_t bytes;
    uint64_t* bar;
  };

  static void trampoline(unsigned lo, unsigned hi, int tid);
  void yield(int tid);
  Mbar& mbar(const uint64_t* bar);
  void complete_if_done(Mbar& m);
  uint64_t shared_offset(const void* p, int bytes, int line) const;
  bool resolve();
  void close_interval();
  std::string where() const;

  SimOptions opt_;
  const void* sched_stack_ = nullptr;  // the scheduler's stack, for ASan's fiber switches (null: the thread's own)
  size_t sched_stack_bytes_ = 0;
  float* smem_ = nullptr;
  size_t smem_floats_ = 0;
  ucontext_t sched_{};
  std::vector<Fiber> fibers_;
  std::vector<SimLane> lanes_;
  const std::function<void(SimLane&)>* body_ = nullptr;
  std::unordered_map<const uint64_t*, Mbar> mbars_;
  std::vector<Copy> copies_;
  std::map<int, PhaseStats> stats_;
  std::vector<int64_t> fma_count_;
  int64_t barriers_ = 0, mbar_waits_ = 0;
};

}  // namespace ebm::sim
