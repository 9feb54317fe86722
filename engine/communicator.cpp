#include "engine/communicator.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace ebm {

std::string SingleProcessCommunicator::scatter(const std::vector<std::string>& blobs, int) {
  EBM_CHECK(blobs.size() == 1, "scatter: one blob per rank");
  return blobs[0];
}

void SingleProcessCommunicator::abort(int exit_code) { std::_Exit(exit_code); }

void broadcast_string(Communicator& c, std::string& s, int root) {
  if (c.size() == 1) return;
  int64_t n = int64_t(s.size());
  c.broadcast(&n, sizeof n, root);
  s.resize(size_t(n));
  if (n > 0) c.broadcast(s.data(), n, root);
}

double max_abs_f_all_ranks(Communicator& c, double max_abs_f) {
  double v[2] = {std::isnan(max_abs_f) ? 0.0 : max_abs_f, std::isnan(max_abs_f) ? 1.0 : 0.0};  // NaN as a flag
  c.allreduce(v, 2, ReduceOp::kMax);
  return v[1] != 0 ? NAN : v[0];
}

bool any_rank(Communicator& c, bool flag) {
  double v = flag ? 1.0 : 0.0;
  c.allreduce(&v, 1, ReduceOp::kMax);
  return v != 0.0;
}

namespace {

// What the ranks of one thread group share: a generation-counting barrier and one pointer slot per rank,
// through which each collective exchanges its arguments (valid between the two barriers of a call).
struct ThreadGroupState {
  explicit ThreadGroupState(int n) : n(n), slot(size_t(n)) {}

  // Every rank arrives before any leaves; CommError when the others do not arrive in time.
  void sync(double timeout_s) {
    std::unique_lock<std::mutex> lock(m);
    const uint64_t gen = generation;
    if (++arrived == n) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return;
    }
    if (!cv.wait_for(lock, std::chrono::duration<double>(timeout_s), [&] { return generation != gen; }))
      throw CommError("thread group: the other ranks did not reach the collective within " +
                      std::to_string(timeout_s) + " s");
  }

  const int n;
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  std::vector<const void*> slot;
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroupState> g, int rank) : g_(std::move(g)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return g_->n; }
  int local_rank() const override { return rank_; }
  std::string describe() const override { return std::to_string(g_->n) + " threads in one process"; }

  void allreduce(float* x, int64_t n, ReduceOp op) override { reduce(x, n, op); }
  void allreduce(double* x, int64_t n, ReduceOp op) override { reduce(x, n, op); }

  void broadcast(void* data, int64_t bytes, int root) override {
    g_->slot[size_t(rank_)] = data;
    g_->sync(timeout_s_);
    if (rank_ != root && bytes > 0) std::memcpy(data, g_->slot[size_t(root)], size_t(bytes));
    g_->sync(timeout_s_);  // root's buffer stays untouched until every rank has copied it
  }

  std::vector<std::string> gather(const std::string& blob, int root) override {
    g_->slot[size_t(rank_)] = &blob;
    g_->sync(timeout_s_);
    std::vector<std::string> all;
    if (rank_ == root)
      for (int r = 0; r < g_->n; ++r) all.push_back(*static_cast<const std::string*>(g_->slot[size_t(r)]));
    g_->sync(timeout_s_);
    return all;
  }

  std::string scatter(const std::vector<std::string>& blobs, int root) override {
    if (rank_ == root) EBM_CHECK(int(blobs.size()) == g_->n, "scatter: one blob per rank");
    g_->slot[size_t(rank_)] = &blobs;
    g_->sync(timeout_s_);
    std::string mine = (*static_cast<const std::vector<std::string>*>(g_->slot[size_t(root)]))[size_t(rank_)];
    g_->sync(timeout_s_);
    return mine;
  }

  void barrier() override { g_->sync(timeout_s_); }
  [[noreturn]] void abort(int exit_code) override { std::_Exit(exit_code); }

 private:
  template <class T>
  void reduce(T* x, int64_t n, ReduceOp op) {
    g_->slot[size_t(rank_)] = x;
    g_->sync(timeout_s_);
    // Every rank computes the same reduction in rank order: the same bits everywhere.
    std::vector<T> acc(static_cast<const T*>(g_->slot[0]), static_cast<const T*>(g_->slot[0]) + n);
    for (int r = 1; r < g_->n; ++r) {
      const T* y = static_cast<const T*>(g_->slot[size_t(r)]);
      for (int64_t i = 0; i < n; ++i) {
        if (op == ReduceOp::kSum) acc[size_t(i)] += y[i];
        else if (op == ReduceOp::kMax) acc[size_t(i)] = acc[size_t(i)] < y[i] ? y[i] : acc[size_t(i)];
        else acc[size_t(i)] = y[i] < acc[size_t(i)] ? y[i] : acc[size_t(i)];
      }
    }
    g_->sync(timeout_s_);  // everyone has read every input before anyone overwrites its own
    std::copy(acc.begin(), acc.end(), x);
  }

  std::shared_ptr<ThreadGroupState> g_;
  int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_thread_group(int n) {
  EBM_CHECK(n >= 1, "thread group: at least one rank");
  auto state = std::make_shared<ThreadGroupState>(n);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < n; ++r) out.push_back(std::make_unique<ThreadCommunicator>(state, r));
  return out;
}

}  // namespace ebm
