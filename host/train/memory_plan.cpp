#include "host/train/memory_plan.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>

#include "engine/error.hpp"
#include "engine/net.hpp"

namespace ebm {

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  int u = 0;
  while (bytes >= 1000 && u < 6) bytes /= 1000, ++u;
  char b[32];
  std::snprintf(b, sizeof b, u == 0 ? "%.0f %s" : "%.3g %s", bytes, units[u]);
  return b;
}

std::vector<MemoryItem> host_memory_plan(const Config& c, const NetSpec& net, int world_size, int threads) {
  const double f32 = 4, img = double(net.image_size());
  std::vector<MemoryItem> plan;

  // The live buffer, and the snapshots a run holds at a checkpoint: the last verified state, the one
  // awaiting verification, and the copy being written.
  const double shard = double(c.buffer.capacity) / std::max(world_size, 1);
  char what[160];
  std::snprintf(what, sizeof what, "replay buffer: %.0f images of %dx%dx%d float32, x4 with checkpoint copies",
                shard, net.in_c, net.in_h, net.in_w);
  plan.push_back({"buffer.capacity", what, 4 * shard * img * f32});

  // Parameters, gradient and Adam moments (4), a partial gradient and two packed weight copies per thread,
  // and parameters plus moments in each of the three snapshots (9).
  const double p = double(net.num_params);
  std::snprintf(what, sizeof what, "network: %.0f parameters with Adam moments, per-thread gradients and snapshots", p);
  plan.push_back({"model.channels", what, (13 + 3.0 * threads) * p * f32});

  // Activations: per row, every layer's input, pre-activation and sigmoid, and its im2col matrix, for the
  // 2·batch rows (real and fake) of a training step's forward and backward pass.
  double per_row = img;
  for (const ConvShape& l : net.convs) {
    const double out = double(l.cout) * l.hout * l.wout;
    per_row += 4 * out + double(l.k) * l.k * l.cin * l.hout * l.wout;
  }
  std::snprintf(what, sizeof what, "activations: 2 x %d rows of %.0f floats each", c.data.batch_size, per_row);
  plan.push_back({"data.batch_size", what, 2.0 * c.data.batch_size * per_row * f32});
  return plan;
}

namespace {

// "<key> <number> kB" from a /proc file such as /proc/meminfo or /proc/self/status, in bytes; -1 if absent.
double proc_kb(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string k;
    double kb = 0;
    if (fields >> k >> kb && k == key) return kb * 1024;
  }
  return -1;
}

// A number from a cgroup file ("max" and anything unreadable: -1).
double cgroup_value(const char* file) {
  std::ifstream in(file);
  std::string v;
  if (!(in >> v) || v == "max") return -1;
  try {
    return std::stod(v);
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

double host_memory_available() {
  double available = proc_kb("/proc/meminfo", "MemAvailable:");
  if (available < 0) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    available = pages > 0 && page > 0 ? double(pages) * double(page) : 0;
  }
  auto at_most = [&](double limit) {
    if (limit >= 0 && (available <= 0 || limit < available)) available = std::max(limit, 1.0);
  };
  // The address-space limit (ulimit -v) less what this process has mapped already.
  rlimit as{};
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY)
    at_most(double(as.rlim_cur) - std::max(0.0, proc_kb("/proc/self/status", "VmSize:")));
  // A container's or a batch job's memory limit (cgroup v2, then v1) less what the group uses.
  const double v2 = cgroup_value("/sys/fs/cgroup/memory.max");
  if (v2 >= 0) at_most(v2 - std::max(0.0, cgroup_value("/sys/fs/cgroup/memory.current")));
  const double v1 = cgroup_value("/sys/fs/cgroup/memory/memory.limit_in_bytes");
  if (v1 >= 0 && v1 < 1e18)  // v1 reports "no limit" as a huge number
    at_most(v1 - std::max(0.0, cgroup_value("/sys/fs/cgroup/memory/memory.usage_in_bytes")));
  return available;
}

void check_host_memory(const std::vector<MemoryItem>& plan, double available) {
  if (available <= 0 || plan.empty()) return;
  const double total =
      std::accumulate(plan.begin(), plan.end(), 0.0, [](double s, const MemoryItem& m) { return s + m.bytes; });
  if (total <= available) return;
  const MemoryItem& big =
      *std::max_element(plan.begin(), plan.end(), [](const MemoryItem& a, const MemoryItem& b) { return a.bytes < b.bytes; });
  user_fail(big.key, ": the run needs about ", human_bytes(total), " of memory, ", human_bytes(big.bytes), " of it for the ",
            big.what, ", but this machine has ", human_bytes(available), " available; lower ", big.key);
}

}  // namespace ebm
