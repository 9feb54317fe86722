// Host-side helpers for runs on several ranks: agreeing on an error so it is reported once and no rank is
// left waiting, and the process's place in the job.
#pragma once
#include <functional>
#include <string>

#include "engine/communicator.hpp"
#include "engine/error.hpp"

namespace ebm {

// An error every rank raised together (through agree()): main prints it once, on rank 0, and every rank
// exits normally; nothing needs aborting.
struct SharedUserError : UserError {
  using UserError::UserError;
};

// Runs `fn` on every rank (root_only: on rank 0 alone), then agrees on the outcome: when it threw a
// UserError on some rank, every rank throws SharedUserError carrying the lowest failing rank's message.
// Other exceptions propagate as they are (main aborts the job). On one rank, fn simply runs.
void agree(Communicator& comm, const std::function<void()>& fn, bool root_only = false);

}  // namespace ebm
