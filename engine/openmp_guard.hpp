// GNU OpenMP (libgomp) and fork(): a child of a process whose OpenMP threads have run waits forever at its first
// parallel region, for threads the child does not have (os.fork, multiprocessing's "fork" start method, a worker
// pool made after a model sampled). Every parallel region of the engine calls openmp_region() first: in such a
// child it is a UserError in one line naming what to do instead. (LLVM's libomp survives fork: no check there.)
#pragma once
#include <atomic>

namespace ebm {

// UserError in a child forked after OpenMP ran (nothing is marked: a backend made but idle forks fine).
void check_openmp_usable();
// Before a parallel region of up to `threads` threads (0: OpenMP's default team): check_openmp_usable(), then
// records that OpenMP ran and the largest team so far.
void openmp_region(int threads = 0);

// The largest team a parallel region has run with so far (1 before any): the threads OpenMP has made.
int openmp_team_reached();

// m = max(m, v), atomically: the high-water marks of teams kept here and in the CPU backend.
inline void atomic_max(std::atomic<int>& m, int v) {
  for (int seen = m.load(); v > seen && !m.compare_exchange_weak(seen, v);) {
  }
}

}  // namespace ebm
