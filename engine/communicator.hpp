// The collectives data-parallel training needs, as the engine sees them. No MPI or NCCL header here:
// host/mpi_communicator.* implements this over MPI (the CPU backend's gradients, and the launch of every
// run on more than one process); the CUDA backend reduces its device buffers with NCCL
// (kernels/nccl_communicator.*), which takes its unique id from rank 0 through this interface.
//
// Every collective is called by every rank in the same order, returns the same values on every rank,
// and gives up with CommError after timeout() seconds: a rank that died or hangs must never leave the
// others waiting forever.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/error.hpp"

namespace ebm {

// A collective that failed or timed out: another rank died, hangs, or the transport broke.
struct CommError : Error {
  using Error::Error;
};

enum class ReduceOp { kSum, kMax, kMin };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;  // among the ranks on this node: which GPU this rank takes
  virtual std::string describe() const = 0;

  // x [n] ← op over all ranks' x, in place; every rank receives the same bits.
  virtual void allreduce(float* x, int64_t n, ReduceOp op) = 0;
  virtual void allreduce(double* x, int64_t n, ReduceOp op) = 0;
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  // Every rank's blob, in rank order, on `root`; an empty vector on the other ranks.
  virtual std::vector<std::string> gather(const std::string& blob, int root) = 0;
  // blobs[r] (read on `root` only, which must give size() of them) to rank r.
  virtual std::string scatter(const std::vector<std::string>& blobs, int root) = 0;
  virtual void barrier() = 0;
  // Ends the whole job now: a rank that cannot go on takes the others down with it rather than leave
  // them blocked in the next collective. Never returns.
  [[noreturn]] virtual void abort(int exit_code) = 0;

  // Seconds a collective may wait for the slowest rank before CommError (train.comm_timeout_s).
  void set_timeout(double seconds) { timeout_s_ = seconds; }
  double timeout() const { return timeout_s_; }

 protected:
  double timeout_s_ = 120.0;
};

// One process alone: every collective is the identity.
class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  std::string describe() const override { return "1 process"; }
  void allreduce(float*, int64_t, ReduceOp) override {}
  void allreduce(double*, int64_t, ReduceOp) override {}
  void broadcast(void*, int64_t, int) override {}
  std::vector<std::string> gather(const std::string& blob, int) override { return {blob}; }
  std::string scatter(const std::vector<std::string>& blobs, int) override;
  void barrier() override {}
  [[noreturn]] void abort(int exit_code) override;
};

// `n` ranks inside one process, one thread each: what the tests use to run data-parallel training
// without a launcher. Reductions add in rank order, so results are deterministic.
std::vector<std::unique_ptr<Communicator>> make_thread_group(int n);

// Rank r's share [first, first + count) of `total` items split over `size` ranks as evenly as possible:
// [⌊total·r/size⌋, ⌊total·(r+1)/size⌋). A full global batch of B·size rows gives every rank B; a partial
// one of 5 rows on 2 ranks gives 2 + 3, one of 1 row gives 0 + 1.
struct Share {
  int64_t first, count;
};
inline Share share_of(int64_t total, int rank, int size) {
  const int64_t a = total * rank / size, b = total * (rank + 1) / size;
  return {a, b - a};
}

// Convenience collectives built on the interface.
void broadcast_string(Communicator& c, std::string& s, int root);
bool any_rank(Communicator& c, bool flag);  // logical OR over ranks
// The divergence guard's measure (engine/loss.hpp: max |f|, NaN when any f is NaN/inf) over all ranks.
double max_abs_f_all_ranks(Communicator& c, double max_abs_f);

}  // namespace ebm
