// The address space a process may still map under a limit on it (ulimit -v: RLIMIT_AS, as batch systems and
// shared machines set), and what the CPU backend's threads map besides the data they hold. Under such a limit a
// failed mmap inside OpenBLAS does not fail: its blas_memory_alloc retries the map forever (a hang at 100% CPU,
// and another at exit, where its shutdown joins that thread). So what the threads will map is checked before
// the first GEMM, and a run that cannot fit stops in one line saying what to change.
#pragma once
#include <optional>
#include <string>

namespace ebm {

constexpr double kMiB = 1024.0 * 1024.0;
// OpenBLAS's work buffer, one per thread that calls GEMM (its BUFFER_SIZE on x86-64, 32 << 22 bytes; measured with
// strace here: a 134217728-byte map per thread, Debian's OpenBLAS 0.3.21).
constexpr double kBlasWorkBuffer = 128 * kMiB;
// A new thread's stack: OMP_STACKSIZE / GOMP_STACKSIZE where set, else glibc's default (RLIMIT_STACK, or 8 MiB).
// (A malloc arena a new thread would reserve is not counted: where it cannot be made, glibc serves the thread
// from mmap instead, and nothing fails.)
double thread_stack_bytes();

struct AddressSpace {
  double limit = 0;   // RLIMIT_AS, bytes
  double mapped = 0;  // VmSize now, bytes
  int threads = 1;    // this process's threads now
  double left() const { return limit - mapped; }
};

// The limit and what is mapped now; nullopt when there is no limit (RLIMIT_AS unlimited) or it cannot be read.
// (`threads` counts every thread of the process, the caller's own pools included.)
std::optional<AddressSpace> address_space();

// Bytes that `threads` threads calling GEMM map beyond their data, when `running` threads exist already (each
// new one adds a stack) and `buffered` of them hold an OpenBLAS work buffer already (it stays mapped). `blas`
// false: no OpenBLAS work buffers (the portable GEMM loop).
double threads_address_space(int threads, int running, bool blas, int buffered = 0);

// Under a limit, a UserError in one line when `need` more bytes (what `what` maps: "the CPU backend's 2 threads")
// do not fit in what is left: the limit, what is mapped, and what to change — a limit that fits (ulimit -v in kB),
// and with several threads what one thread needs (`one_thread`, bytes; 0: not offered). Nothing without a limit.
void check_address_space(double need, const std::string& what, int threads, double one_thread);

// What an out-of-memory line adds under an address-space limit: "; this process may map 586 MiB in all
// (ulimit -v 600000): raise the limit (or unlimited)"; "" without one.
std::string address_space_hint();

}  // namespace ebm
