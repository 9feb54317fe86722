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
// What one more thread maps, measured here (strace of a CPU run, Debian's OpenBLAS 0.3.21, glibc 2.36):
// OpenBLAS's work buffer, one per thread that calls GEMM (its BUFFER_SIZE on x86-64, 32 << 22 bytes); a
// thread's stack (glibc's default: RLIMIT_STACK's 8 MiB); glibc's malloc arena of a new thread, reserved as
// 128 MiB and trimmed to 64 MiB (HEAP_MAX_SIZE), so 128 MiB must be free when it is made.
constexpr double kBlasWorkBuffer = 128 * kMiB, kThreadStack = 8 * kMiB, kMallocArena = 128 * kMiB;

struct AddressSpace {
  double limit = 0;   // RLIMIT_AS, bytes
  double mapped = 0;  // VmSize now, bytes
  int threads = 1;    // this process's threads now
  double left() const { return limit - mapped; }
};

// The limit and what is mapped now; nullopt when there is no limit (RLIMIT_AS unlimited) or it cannot be read.
std::optional<AddressSpace> address_space();

// Bytes that `threads` threads calling GEMM map beyond their data, when `running` threads exist already (each
// new one adds a stack and a malloc arena) and `buffered` of them hold an OpenBLAS work buffer already (it stays
// mapped: a second backend in the process, ebm_eval's model after its classifier, maps none again). `blas`
// false: no OpenBLAS work buffers (the portable GEMM loop).
double threads_address_space(int threads, int running, bool blas, int buffered = 0);

// Under a limit, a UserError in one line when `need` more bytes (what `what` maps: "the CPU backend's 2 threads")
// do not fit in what is left: the limit, what is mapped, and what to change — a limit that fits (ulimit -v in kB),
// and with several threads what one thread needs (`one_thread`, bytes; 0: not offered). Nothing without a limit.
void check_address_space(double need, const std::string& what, int threads, double one_thread);

}  // namespace ebm
