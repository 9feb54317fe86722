#include "host/memory_plan.hpp"

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

double host_memory_available() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    std::istringstream in(line);
    std::string key;
    double kb = 0;
    if (in >> key >> kb && key == "MemAvailable:") return kb * 1024;
  }
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? double(pages) * double(page) : 0;
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
