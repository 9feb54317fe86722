#include "engine/openmp_guard.hpp"

#include <omp.h>
#include <pthread.h>

#include <atomic>

#include "engine/error.hpp"

namespace ebm {
namespace {

std::atomic<bool> g_ran{false}, g_forked_after{false};
std::atomic<int> g_team{1};

#if defined(__GNUC__) && !defined(__clang__)  // libgomp
void mark_forked_child() {
  if (g_ran.load()) g_forked_after.store(true);
}
[[maybe_unused]] const int g_atfork_registered = pthread_atfork(nullptr, nullptr, mark_forked_child);
#endif

}  // namespace

void check_openmp_usable() {
  if (g_forked_after.load())
    user_fail("the CPU backend cannot run in a process forked (os.fork, multiprocessing's \"fork\" start method) from ",
              "one whose OpenMP threads had run: GNU OpenMP would wait forever for them; start worker processes with ",
              "multiprocessing's \"spawn\" or \"forkserver\" method, or fork them before the first model computes");
}

void openmp_region(int threads) {
  check_openmp_usable();
  g_ran.store(true);
  const int t = threads > 0 ? threads : omp_get_max_threads();
  atomic_max(g_team, t);
}

int openmp_team_reached() { return g_team.load(); }

}  // namespace ebm
