#include "host/train/memory_plan.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>

#include "engine/address_space.hpp"
#include "engine/cpu/cpu_backend.hpp"
#include "engine/cpu/gemm.hpp"
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

  // The drift guard's epoch-end states (train.divergence.drift_factor): each a buffer shard, parameters,
  // Adam moments and θ_ema.
  if (c.train.divergence.drift_factor > 0) {
    const int n = c.train.divergence.drift_lookback;
    std::snprintf(what, sizeof what, "divergence guard: %d epoch-end states for drift rollbacks (replay buffer and network)", n);
    plan.push_back({"train.divergence.drift_lookback", what, n * (shard * img + 4 * p) * f32});
  }

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

double cgroup_memory_left(const std::string& proc_cgroup, const std::string& mountinfo, const std::string& root) {
  // Where each hierarchy is mounted: mountinfo's fields are "id parent dev root mountpoint opts ... - fstype src super".
  std::string v2_mount, v2_root, v1_mount, v1_root;
  std::istringstream mounts(mountinfo);
  for (std::string line; std::getline(mounts, line);) {
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream head(line.substr(0, dash)), tail(line.substr(dash + 3));
    std::string id, parent, dev, mroot, point, fstype, src, super;
    if (!(head >> id >> parent >> dev >> mroot >> point) || !(tail >> fstype >> src >> super)) continue;
    if (fstype == "cgroup2" && v2_mount.empty()) v2_mount = point, v2_root = mroot;
    if (fstype == "cgroup" && ("," + super + ",").find(",memory,") != std::string::npos) v1_mount = point, v1_root = mroot;
  }
  double left = -1;
  auto at_most = [&](double limit, double usage) {
    if (limit < 0 || limit >= 1e18) return;  // none ("max"), or v1's "no limit"
    const double l = limit - std::max(0.0, usage);
    if (left < 0 || l < left) left = std::max(l, 1.0);
  };
  // The process's cgroup in each hierarchy ("0::/path" for v2, "N:...memory...:/path" for v1), then every
  // cgroup above it up to the mount's root: a parent's limit holds its children too.
  // Usage less the page cache the kernel reclaims before it fails an allocation (memory.stat's inactive_file, as
  // kubelet and docker count it): a long job's group sits near its limit on cache alone.
  auto stat_value = [](const std::string& file, const char* key) {
    std::ifstream in(file);
    std::string k;
    double v = 0;
    while (in >> k >> v)
      if (k == key) return v;
    return 0.0;
  };
  auto walk = [&](const std::string& mount, const std::string& mroot, std::string path, const char* limit_file,
                  const char* usage_file, const char* inactive_key) {
    if (mount.empty()) return;
    if (mroot != "/" && path.starts_with(mroot) && (path.size() == mroot.size() || path[mroot.size()] == '/'))
      path = path.substr(mroot.size());  // a namespaced mount: the path below its root
    for (;;) {
      const std::string dir = root + mount + (path == "/" ? std::string() : path);
      const double usage = cgroup_value((dir + "/" + usage_file).c_str());
      at_most(cgroup_value((dir + "/" + limit_file).c_str()),
              usage < 0 ? usage : usage - stat_value(dir + "/memory.stat", inactive_key));
      if (path.empty() || path == "/") break;
      const size_t slash = path.rfind('/');
      path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
    }
  };
  std::istringstream groups(proc_cgroup);
  for (std::string line; std::getline(groups, line);) {
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty())
      walk(v2_mount, v2_root, path, "memory.max", "memory.current", "inactive_file");
    else if (("," + controllers + ",").find(",memory,") != std::string::npos)
      walk(v1_mount, v1_root, path, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file");
  }
  return left;
}

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
  // A container's or a batch job's memory limit: this process's cgroup's, or a parent's, less what they use.
  auto text = [](const char* file) {
    std::ifstream in(file);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  };
  at_most(cgroup_memory_left(text("/proc/self/cgroup"), text("/proc/self/mountinfo")));
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

void check_address_space_for_run(const std::vector<MemoryItem>& plan, bool cpu_backend, int threads) {
  if (!address_space()) return;
  const double data =
      std::accumulate(plan.begin(), plan.end(), 0.0, [](double s, const MemoryItem& m) { return s + m.bytes; });
  if (cpu_backend) set_gemm_threads(1);  // OpenBLAS loaded now: its own mapping counts as mapped
  const double own = cpu_backend ? cpu_backend_address_space(threads) : 0.0;
  check_address_space(data + own,
                      "the run (" + human_bytes(data) + " for its replay buffer, network and activations)" +
                          (cpu_backend ? " and the CPU backend's " + std::to_string(threads) + " thread" +
                                             (threads == 1 ? "" : "s") + " (OpenBLAS's work buffer and a stack each)"
                                       : std::string()),
                      cpu_backend ? threads : 1, data + cpu_backend_address_space(1));
}

}  // namespace ebm
