// What a run may use of this machine's memory (host/train/memory_plan.hpp, engine/address_space.hpp): the cgroup
// limits found where the process's cgroup really is (planted hierarchies, v1 and v2, nested and namespaced), the
// address space the CPU backend's threads map, and the one-line refusals.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <cstdlib>
#include <fstream>

#include "engine/address_space.hpp"
#include "engine/error.hpp"
#include "host/train/memory_plan.hpp"
#include "tests/test_support.hpp"

namespace fs = std::filesystem;

namespace ebm {
namespace {

void plant(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  test::spit(file, text + "\n");
}

constexpr const char* kMountsV1 =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "35 31 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "40 31 0:36 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

TEST(MemoryPlan, ACgroupV1LimitIsReadWhereTheProcessIsAndAbove) {
  // The case this machine is in: memory:/process_api/<id>, limits on the job's group, not at the mount's root
  // (reading only the root's file, as before, found none).
  test::TempDir tmp("ebm_cgroup");
  const std::string r = tmp.path.string();
  const std::string self = "4:memory:/process_api/job7\n1:cpu:/\n0::/\n";
  plant(tmp.path / "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712");  // v1's "no limit"
  plant(tmp.path / "sys/fs/cgroup/memory/memory.usage_in_bytes", "5000000000");
  plant(tmp.path / "sys/fs/cgroup/memory/process_api/job7/memory.limit_in_bytes", "9223372036854771712");
  plant(tmp.path / "sys/fs/cgroup/memory/process_api/job7/memory.usage_in_bytes", "100000000");
  EXPECT_EQ(cgroup_memory_left(self, kMountsV1, r), -1) << "no level limits it";
  plant(tmp.path / "sys/fs/cgroup/memory/process_api/job7/memory.limit_in_bytes", "600000000");
  EXPECT_EQ(cgroup_memory_left(self, kMountsV1, r), 500000000);
  // A parent's tighter limit holds its children too: 400 MB for the group, 250 MB used in it.
  plant(tmp.path / "sys/fs/cgroup/memory/process_api/memory.limit_in_bytes", "400000000");
  plant(tmp.path / "sys/fs/cgroup/memory/process_api/memory.usage_in_bytes", "250000000");
  EXPECT_EQ(cgroup_memory_left(self, kMountsV1, r), 150000000);
  // 100 MB of it is page cache the kernel reclaims first: not in use as far as a run is concerned.
  plant(tmp.path / "sys/fs/cgroup/memory/process_api/memory.stat", "cache 120000000\ntotal_inactive_file 100000000");
  EXPECT_EQ(cgroup_memory_left(self, kMountsV1, r), 250000000);
}

TEST(MemoryPlan, ACgroupV2LimitIsReadWhereverCgroup2IsMounted) {
  test::TempDir tmp("ebm_cgroup");
  const std::string r = tmp.path.string();
  // A container's own namespace: cgroup2 at /sys/fs/cgroup, the process at its root.
  const std::string container = "27 22 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
  plant(tmp.path / "sys/fs/cgroup/memory.max", "268435456");
  plant(tmp.path / "sys/fs/cgroup/memory.current", "68435456");
  EXPECT_EQ(cgroup_memory_left("0::/\n", container, r), 200000000);
  plant(tmp.path / "sys/fs/cgroup/memory.max", "max");
  EXPECT_EQ(cgroup_memory_left("0::/\n", container, r), -1);
  // A Slurm job's step under a hybrid host (cgroup2 at .../unified), and a mount whose root is the job's own
  // group (a namespaced view): the path is read relative to it.
  plant(tmp.path / "sys/fs/cgroup/unified/slurm/job_9/memory.max", "1000000000");
  plant(tmp.path / "sys/fs/cgroup/unified/slurm/job_9/step_0/memory.max", "max");
  plant(tmp.path / "sys/fs/cgroup/unified/slurm/job_9/step_0/memory.current", "1");
  EXPECT_EQ(cgroup_memory_left("0::/slurm/job_9/step_0\n", kMountsV1, r), 1000000000);
  const std::string namespaced = "27 22 0:26 /slurm/job_9 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
  plant(tmp.path / "sys/fs/cgroup/step_0/memory.max", "300000000");
  plant(tmp.path / "sys/fs/cgroup/step_0/memory.current", "50000000");
  plant(tmp.path / "sys/fs/cgroup/step_0/memory.stat", "anon 10000000\ninactive_file 20000000");
  EXPECT_EQ(cgroup_memory_left("0::/slurm/job_9/step_0\n", namespaced, r), 300000000 - 30000000);
  // A mount root that is a prefix of the path's name but not of its folders (/slurm/job_9 vs /slurm/job_90).
  EXPECT_EQ(cgroup_memory_left("0::/slurm/job_90/step_0\n", namespaced, r), -1);
}

TEST(MemoryPlan, TheThreadsAddressSpaceByHand) {
  // 2 threads, the main one running: two OpenBLAS work buffers (128 MiB each) and one new thread's stack.
  setenv("OMP_STACKSIZE", "16M", 1);
  EXPECT_EQ(thread_stack_bytes(), 16 * kMiB);
  EXPECT_EQ(threads_address_space(2, 1, true), (256 + 16) * kMiB);
  EXPECT_EQ(threads_address_space(2, 2, true), 256 * kMiB) << "both threads exist already";
  EXPECT_EQ(threads_address_space(2, 2, true, 2), 0.0) << "and hold their work buffers";
  EXPECT_EQ(threads_address_space(4, 2, true, 2), (256 + 32) * kMiB);
  EXPECT_EQ(threads_address_space(1, 1, false), 0.0) << "the portable GEMM maps no work buffer";
  setenv("OMP_STACKSIZE", "512", 1);  // K by default
  EXPECT_EQ(thread_stack_bytes(), 512 * 1024.0);
  unsetenv("OMP_STACKSIZE");
  EXPECT_GT(thread_stack_bytes(), 0.0);
}

// Under a limit set here (and lifted after: a soft limit may rise back to the hard one).
TEST(MemoryPlan, AnAddressSpaceRefusalSaysTheLimitAndWhatFits) {
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_AS, &before), 0);
  const std::optional<AddressSpace> now = address_space();
  rlimit limited = before;
  if (!now) {
    std::ifstream status("/proc/self/status");
    double vm_kb = 0;
    for (std::string key; status >> key;)
      if (key == "VmSize:" && status >> vm_kb) break;
    ASSERT_GT(vm_kb, 0);
    limited.rlim_cur = rlim_t(vm_kb * 1024 + 1024 * kMiB);  // 1 GiB more than is mapped
    ASSERT_EQ(setrlimit(RLIMIT_AS, &limited), 0);
  }
  struct Lift {
    rlimit r;
    ~Lift() { setrlimit(RLIMIT_AS, &r); }
  } lift{before};
  ASSERT_TRUE(address_space());
  const double left = address_space()->left();
  EXPECT_NO_THROW(check_address_space(left / 2, "x", 1, 0));
  test::expect_user_error([&] { check_address_space(left + 64 * kMiB, "the CPU backend's 2 threads", 2, kMiB); },
                          {"out of address space: the CPU backend's 2 threads need about", "ulimit -v",
                           "raise the limit", "OMP_NUM_THREADS=1"});
}

TEST(MemoryPlan, APlanThatDoesNotFitNamesTheKeyToLower) {
  const std::vector<MemoryItem> plan = {{"buffer.capacity", "replay buffer", 3e9}, {"data.batch_size", "activations", 1e9}};
  EXPECT_NO_THROW(check_host_memory(plan, 5e9));
  test::expect_user_error([&] { check_host_memory(plan, 2e9); },
                          {"buffer.capacity: the run needs about 4 GB of memory, 3 GB of it for the replay buffer",
                           "2 GB available; lower buffer.capacity"});
}

}  // namespace
}  // namespace ebm
