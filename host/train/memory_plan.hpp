// Before a run allocates: does what the config asks for fit in this machine's memory? A replay buffer of
// 2^31 images or a network of 8 layers of 4096 channels would otherwise pass validation and die later in
// std::bad_alloc (or in the kernel's OOM killer); here it is one line naming the key to lower.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "host/io/config.hpp"

namespace ebm {

struct NetSpec;

// One allocation the run makes in host memory, with the config key that sizes it.
struct MemoryItem {
  std::string key;   // e.g. "buffer.capacity"
  std::string what;  // e.g. "replay buffer: 8192 images of 1x32x32 float32, x4 with checkpoint copies"
  double bytes = 0;  // a double: the products overflow int64 for the configs this exists to refuse
};

// The run's main host allocations (CPU backend layout; the CUDA backend keeps host copies of the same
// state for checkpoints): replay buffer (this rank's shard, live and in up to three checkpoint snapshots),
// parameters with Adam moments and per-thread gradients, and activations of a training step's 2·batch rows.
// The training set is not included: it is loaded (and so already held) before this check.
std::vector<MemoryItem> host_memory_plan(const Config& c, const NetSpec& net, int world_size, int threads);

// Bytes this process can still allocate: the kernel's MemAvailable (the physical size where /proc/meminfo
// is missing), less where an address-space limit (ulimit -v) or a cgroup memory limit (a container, a
// Slurm job) leaves less; 0 when unknown (then nothing is checked).
double host_memory_available();

// What this process's memory cgroup still allows (limit − usage; the tightest over its cgroup and every cgroup
// above it), or −1 where none limits it. `proc_cgroup` and `mountinfo`: the texts of /proc/self/cgroup and
// /proc/self/mountinfo; the limit files are read under `root` + the mount point (root "" on a live system). Both
// hierarchies: cgroup v2 (memory.max, memory.current, wherever cgroup2 is mounted) and v1's memory controller
// (memory.limit_in_bytes, memory.usage_in_bytes; its "no limit" is a huge number).
double cgroup_memory_left(const std::string& proc_cgroup, const std::string& mountinfo, const std::string& root = "");

// UserError naming the largest item's key, its size and what is available, when the plan does not fit.
void check_host_memory(const std::vector<MemoryItem>& plan, double available);

// Under an address-space limit (ulimit -v), a UserError in one line when the plan and, for a run on the CPU
// backend, what its `threads` threads map besides (engine/address_space.hpp: OpenBLAS's work buffers, stacks,
// malloc arenas) do not fit in what the process may still map. Nothing without a limit.
void check_address_space_for_run(const std::vector<MemoryItem>& plan, bool cpu_backend, int threads);

// "8.8 TB", "33.6 MB": decimal units, three significant digits.
std::string human_bytes(double bytes);

}  // namespace ebm
