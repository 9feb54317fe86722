#include "host/train/mpi_communicator.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <thread>

#ifdef EBM_HAVE_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only: no deprecated C++ bindings (and no libmpi_cxx)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace ebm {

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return (*end == '\0' && x >= 0 && x <= INT_MAX) ? int(x) : fallback;
}

}  // namespace

LaunchEnv launch_env() {
  LaunchEnv e;
  if (env_int("OMPI_COMM_WORLD_SIZE", 0) > 0) {
    e = {env_int("OMPI_COMM_WORLD_SIZE", 1), env_int("OMPI_COMM_WORLD_RANK", 0),
         env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0), "OMPI_COMM_WORLD_SIZE (mpirun)"};
  } else if (env_int("SLURM_STEP_NUM_TASKS", 0) > 0) {  // set for srun's job steps, not for batch scripts
    e = {env_int("SLURM_STEP_NUM_TASKS", 1), env_int("SLURM_PROCID", 0), env_int("SLURM_LOCALID", 0),
         "SLURM_STEP_NUM_TASKS (srun)"};
  } else if (env_int("PMI_SIZE", 0) > 0) {
    e = {env_int("PMI_SIZE", 1), env_int("PMI_RANK", 0), env_int("MPI_LOCALRANKID", env_int("SLURM_LOCALID", 0)),
         "PMI_SIZE"};
  }
  return e;
}

#ifdef EBM_HAVE_MPI

bool mpi_available() { return true; }

namespace {

using Clock = std::chrono::steady_clock;

// MPI with every collective non-blocking and polled against a deadline: a rank that died or hangs turns
// into CommError on the others after timeout() seconds instead of a wait that never ends. Errors come back
// as return codes (MPI_ERRORS_RETURN) and become CommError too; main then prints and calls abort(), and
// MPI_Abort brings the whole job down.
class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int* argc, char*** argv, const LaunchEnv& env) {
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      user_fail("MPI_Init_thread failed (launched as rank ", env.rank, " of ", env.size, " by ", env.launcher, ")");
    initialized_ = true;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    if (size_ != env.size)
      user_fail("launched as rank ", env.rank, " of ", env.size, " (", env.launcher, ") but MPI sees ", size_,
                " process(es): under Slurm, run srun with --mpi=pmix (or pmi2) so MPI joins the step's tasks");
    local_rank_ = env.local_rank;
    char name[MPI_MAX_PROCESSOR_NAME] = {};
    int len = 0;
    MPI_Get_processor_name(name, &len);
    host_.assign(name, size_t(std::max(len, 0)));
    int version = 0, subversion = 0;
    MPI_Get_version(&version, &subversion);
    mpi_version_ = std::to_string(version) + "." + std::to_string(subversion);
  }

  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (initialized_ && !finalized) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string describe() const override {
    return "MPI " + mpi_version_ + ": rank " + std::to_string(rank_) + " of " + std::to_string(size_) +
           " (local rank " + std::to_string(local_rank_) + ") on " + host_ + ", pid " + std::to_string(getpid());
  }

  void allreduce(float* x, int64_t n, ReduceOp op) override { reduce(x, n, MPI_FLOAT, op); }
  void allreduce(double* x, int64_t n, ReduceOp op) override { reduce(x, n, MPI_DOUBLE, op); }

  void broadcast(void* data, int64_t bytes, int root) override {
    MPI_Request req;
    check(MPI_Ibcast(data, count(bytes), MPI_BYTE, root, MPI_COMM_WORLD, &req), "MPI_Ibcast");
    wait(req, "a broadcast");
  }

  std::vector<std::string> gather(const std::string& blob, int root) override {
    int64_t mine = int64_t(blob.size());
    std::vector<int64_t> sizes(static_cast<size_t>(size_));
    MPI_Request req;
    check(MPI_Igather(&mine, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, root, MPI_COMM_WORLD, &req), "MPI_Igather");
    wait(req, "a gather of sizes");
    std::vector<int> counts(static_cast<size_t>(size_)), displs(static_cast<size_t>(size_));
    std::string all;
    if (rank_ == root) {
      int64_t total = 0;
      for (int r = 0; r < size_; ++r) {
        counts[size_t(r)] = count(sizes[size_t(r)]);
        displs[size_t(r)] = count(total);
        total += sizes[size_t(r)];
      }
      all.resize(size_t(count(total)));
    }
    check(MPI_Igatherv(blob.data(), count(mine), MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE, root,
                       MPI_COMM_WORLD, &req),
          "MPI_Igatherv");
    wait(req, "a gather (checkpoint)");
    std::vector<std::string> out;
    if (rank_ == root)
      for (int r = 0; r < size_; ++r) out.push_back(all.substr(size_t(displs[size_t(r)]), size_t(counts[size_t(r)])));
    return out;
  }

  std::string scatter(const std::vector<std::string>& blobs, int root) override {
    std::vector<int64_t> sizes(static_cast<size_t>(size_));
    std::vector<int> counts(static_cast<size_t>(size_)), displs(static_cast<size_t>(size_));
    std::string all;
    if (rank_ == root) {
      EBM_CHECK(int(blobs.size()) == size_, "scatter: one blob per rank");
      for (int r = 0; r < size_; ++r) {
        sizes[size_t(r)] = int64_t(blobs[size_t(r)].size());
        counts[size_t(r)] = count(sizes[size_t(r)]);
        displs[size_t(r)] = count(int64_t(all.size()));
        all += blobs[size_t(r)];
      }
    }
    int64_t mine = 0;
    MPI_Request req;
    check(MPI_Iscatter(sizes.data(), 1, MPI_INT64_T, &mine, 1, MPI_INT64_T, root, MPI_COMM_WORLD, &req),
          "MPI_Iscatter");
    wait(req, "a scatter of sizes");
    std::string out(size_t(mine), '\0');
    check(MPI_Iscatterv(all.data(), counts.data(), displs.data(), MPI_BYTE, out.data(), count(mine), MPI_BYTE, root,
                        MPI_COMM_WORLD, &req),
          "MPI_Iscatterv");
    wait(req, "a scatter (resume)");
    return out;
  }

  void barrier() override {
    MPI_Request req;
    check(MPI_Ibarrier(MPI_COMM_WORLD, &req), "MPI_Ibarrier");
    wait(req, "a barrier");
  }

  [[noreturn]] void abort(int exit_code) override {
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);  // MPI_Abort does not return; this only satisfies [[noreturn]]
  }

 private:
  template <class T>
  void reduce(T* x, int64_t n, MPI_Datatype type, ReduceOp op) {
    const MPI_Op mop = op == ReduceOp::kSum ? MPI_SUM : (op == ReduceOp::kMax ? MPI_MAX : MPI_MIN);
    MPI_Request req;
    check(MPI_Iallreduce(MPI_IN_PLACE, x, count(n), type, mop, MPI_COMM_WORLD, &req), "MPI_Iallreduce");
    wait(req, ("an all-reduce of " + std::to_string(n) + (type == MPI_FLOAT ? " floats" : " doubles")).c_str());
  }

  int count(int64_t n) const {
    EBM_CHECK(n >= 0 && n <= INT_MAX, "MPI message larger than 2^31 elements");
    return int(n);
  }

  void check(int rc, const char* call) const {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING] = {};
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw CommError(std::string(call) + " failed (" + std::string(text, size_t(std::max(len, 0))) +
                    "): another rank probably died");
  }

  // Polls `req` until it completes or the deadline passes. Spins briefly (a step's collectives usually
  // complete within microseconds of the last rank arriving), then sleeps with a growing pause of at most
  // 1 ms so a waiting rank leaves the cores to ranks still computing on the same node.
  void wait(MPI_Request& req, const std::string& what) {
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s_));
    int pause_us = 0;
    for (int polls = 0;; ++polls) {
      int done = 0;
      check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done) return;
      if (Clock::now() > deadline)
        throw CommError(what + " did not complete within " + std::to_string(int(timeout_s_ + 0.5)) +
                        " s (train.comm_timeout_s): another rank died, hangs, or is stuck far behind; giving up");
      if (polls < 1000) continue;
      pause_us = std::min(1000, pause_us + 10);
      std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
    }
  }

  int rank_ = 0, size_ = 1, local_rank_ = 0;
  bool initialized_ = false;
  std::string host_, mpi_version_;
};

}  // namespace

std::unique_ptr<Communicator> make_world_communicator(int* argc, char*** argv) {
  const LaunchEnv env = launch_env();
  if (env.size <= 1) return std::make_unique<SingleProcessCommunicator>();
  return std::make_unique<MpiCommunicator>(argc, argv, env);
}

#else  // no MPI in this build

bool mpi_available() { return false; }

std::unique_ptr<Communicator> make_world_communicator(int*, char***) {
  const LaunchEnv env = launch_env();
  if (env.size > 1)
    user_fail("launched as rank ", env.rank, " of ", env.size, " (", env.launcher,
              ") but this build has no MPI (libopenmpi-dev was not found at configure time): install it "
              "(scripts/setup.sh does) and rebuild, or run a single process");
  return std::make_unique<SingleProcessCommunicator>();
}

#endif

}  // namespace ebm
