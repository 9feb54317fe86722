#include "host/train/distributed.hpp"

namespace ebm {

void agree(Communicator& comm, const std::function<void()>& fn, bool root_only) {
  if (comm.size() == 1) {
    if (!root_only || comm.rank() == 0) fn();
    return;
  }
  std::string message;
  bool failed = false;
  if (!root_only || comm.rank() == 0) {
    try {
      fn();
    } catch (const UserError& e) {
      failed = true;
      message = e.what();
      if (comm.rank() != 0)
        message = "rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size()) + ": " + message;
    }
  }
  double first_failing = failed ? comm.rank() : comm.size();
  comm.allreduce(&first_failing, 1, ReduceOp::kMin);
  if (first_failing >= comm.size()) return;
  broadcast_string(comm, message, int(first_failing));
  throw SharedUserError(message);
}

}  // namespace ebm
