// NCCL for the CUDA backend's data-parallel step: the gradient all-reduce over one flat device buffer and the
// step's metric sums, on a communication stream of its own, ordered after and before the compute stream by
// events (no host sync, capturable into the train step's CUDA graph). One rank per GPU: the current device.
//
// Faults: the communicator is created non-blocking (ncclConfig_t::blocking = 0), so the host can poll NCCL's
// asynchronous error while it waits; synchronize() is the backend's cudaStreamSynchronize with a deadline
// (the host communicator's timeout, train.comm_timeout_s): when a peer died or hangs, it aborts the NCCL
// communicator (so no kernel spins forever) and throws CommError; ebm_train then ends the job with MPI_Abort.
#pragma once
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdint>
#include <string>

#include "engine/communicator.hpp"

namespace ebm::cuda {

class NcclCommunicator {
 public:
  // Collective over `host`'s ranks (rank 0 makes the unique id and broadcasts it); call with the rank's
  // device current.
  explicit NcclCommunicator(Communicator& host);
  ~NcclCommunicator();
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const { return host_.rank(); }
  int size() const { return host_.size(); }
  std::string describe() const;

  // dev [n] ← Σ (or max) over the ranks, in place. Runs after everything enqueued on `compute` so far;
  // whatever is enqueued on `compute` afterwards runs after it.
  void allreduce_sum(float* dev, int64_t n, cudaStream_t compute) { enqueue(dev, n, ncclFloat32, ncclSum, compute); }
  void allreduce_sum(double* dev, int64_t n, cudaStream_t compute) { enqueue(dev, n, ncclFloat64, ncclSum, compute); }
  void allreduce_max(double* dev, int64_t n, cudaStream_t compute) { enqueue(dev, n, ncclFloat64, ncclMax, compute); }

  // cudaStreamSynchronize(s), polling NCCL's asynchronous error and giving up after the host communicator's
  // timeout: then the NCCL communicator is aborted and CommError thrown.
  void synchronize(cudaStream_t s);

 private:
  void enqueue(void* dev, int64_t n, ncclDataType_t type, ncclRedOp_t op, cudaStream_t compute);
  // A call on a non-blocking communicator may return ncclInProgress: wait until it settles.
  void check(ncclResult_t r, const char* call);
  [[noreturn]] void fail(const std::string& why);

  Communicator& host_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
};

}  // namespace ebm::cuda
