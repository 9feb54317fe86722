#include "engine/address_space.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "engine/error.hpp"

namespace ebm {
namespace {

// "<key> <number>" from /proc/self/status; -1 if absent.
double status_field(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string k;
    double v = 0;
    if (fields >> k >> v && k == key) return v;
  }
  return -1;
}

std::string mib(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.0f MiB", std::ceil(bytes / kMiB));
  return b;
}

}  // namespace

std::optional<AddressSpace> address_space() {
  rlimit as{};
  if (getrlimit(RLIMIT_AS, &as) != 0 || as.rlim_cur == RLIM_INFINITY) return std::nullopt;
  const double vm_kb = status_field("VmSize:");
  if (vm_kb < 0) return std::nullopt;
  const double threads = status_field("Threads:");
  return AddressSpace{double(as.rlim_cur), vm_kb * 1024, threads > 0 ? int(threads) : 1};
}

double thread_stack_bytes() {
  for (const char* name : {"GOMP_STACKSIZE", "OMP_STACKSIZE"}) {  // "<n>[B|K|M|G]", K by default
    const char* v = std::getenv(name);
    if (!v || !*v) continue;
    char* end = nullptr;
    const double n = std::strtod(v, &end);
    const char unit = end && *end ? char(std::toupper(static_cast<unsigned char>(*end))) : 'K';
    const double scale = unit == 'B' ? 1 : unit == 'M' ? kMiB : unit == 'G' ? 1024 * kMiB : 1024;
    if (n > 0) return n * scale;
  }
  rlimit st{};
  if (getrlimit(RLIMIT_STACK, &st) == 0 && st.rlim_cur != RLIM_INFINITY && st.rlim_cur > 0) return double(st.rlim_cur);
  return 8 * kMiB;
}

double threads_address_space(int threads, int running, bool blas, int buffered) {
  const int fresh = threads > running ? threads - running : 0, unbuffered = threads > buffered ? threads - buffered : 0;
  return (blas ? unbuffered * kBlasWorkBuffer : 0.0) + fresh * thread_stack_bytes();
}

void check_address_space(double need, const std::string& what, int threads, double one_thread) {
  const std::optional<AddressSpace> as = address_space();
  if (!as || need <= as->left()) return;
  // A limit that fits, with 5% to spare, in ulimit -v's kB.
  char limit[64], fits[32];
  std::snprintf(limit, sizeof limit, "ulimit -v %.0f", as->limit / 1024);
  std::snprintf(fits, sizeof fits, "%.0f", std::ceil((as->mapped + need) * 1.05 / 1024 / 1000) * 1000);
  user_fail("out of address space: ", what, " need about ", mib(need), " more than the ", mib(std::max(0.0, as->left())),
            " this process may still map (", limit, ", ", mib(as->mapped), " mapped already); raise the limit (ulimit -v ",
            fits, " or more, or unlimited)",
            threads > 1 && one_thread > 0 && one_thread <= as->left()
                ? ", or run on one thread (OMP_NUM_THREADS=1 needs about " + mib(one_thread) + ")"
                : std::string());
}

std::string address_space_hint() {
  const std::optional<AddressSpace> as = address_space();
  if (!as) return "";
  char b[160];
  std::snprintf(b, sizeof b, "; this process may map %s in all (ulimit -v %.0f): raise the limit (or unlimited)",
                mib(as->limit).c_str(), as->limit / 1024);
  return b;
}

}  // namespace ebm
