#include "engine/cuda/nccl_communicator.cuh"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "engine/cuda/cuda_check.cuh"

namespace ebm::cuda {

namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point deadline_after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& host) : host_(host) {
  ncclUniqueId id;
  if (host_.rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  host_.broadcast(&id, sizeof id, 0);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // calls return at once; errors and hangs are seen by polling, see synchronize()
  check(ncclCommInitRankConfig(&comm_, host_.size(), id, host_.rank(), &config), "ncclCommInitRankConfig");
  EBM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  EBM_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
  EBM_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
}

NcclCommunicator::~NcclCommunicator() {  // errors here have nowhere to go
  if (comm_) {  // null after fail(), which aborted it
    ncclCommFinalize(comm_);  // flushes outstanding work; non-blocking, so wait for it within the timeout
    ncclResult_t state = ncclInProgress;
    const auto deadline = deadline_after(host_.timeout());
    while (ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclInProgress && Clock::now() < deadline)
      std::this_thread::yield();
    if (state == ncclSuccess) ncclCommDestroy(comm_);
    else ncclCommAbort(comm_);
  }
  if (done_) cudaEventDestroy(done_);
  if (ready_) cudaEventDestroy(ready_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string NcclCommunicator::describe() const {
  int version = 0;
  ncclGetVersion(&version);
  return "NCCL " + std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
         std::to_string(version % 100) + ", rank " + std::to_string(rank()) + " of " + std::to_string(size());
}

void NcclCommunicator::enqueue(void* dev, int64_t n, ncclDataType_t type, ncclRedOp_t op, cudaStream_t compute) {
  if (n <= 0) return;
  // compute → comm: the reduction reads what the compute stream wrote; comm → compute: what follows reads it.
  EBM_CUDA_CHECK(cudaEventRecord(ready_, compute));
  EBM_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
  check(ncclAllReduce(dev, dev, size_t(n), type, op, comm_, stream_), "ncclAllReduce");
  EBM_CUDA_CHECK(cudaEventRecord(done_, stream_));
  EBM_CUDA_CHECK(cudaStreamWaitEvent(compute, done_, 0));
}

void NcclCommunicator::check(ncclResult_t r, const char* call) {
  if (r == ncclInProgress) {  // non-blocking: the call was accepted; wait until the communicator settles
    const auto deadline = deadline_after(host_.timeout());
    do {
      if (Clock::now() > deadline)
        fail(std::string(call) + " still in progress after " + std::to_string(int(host_.timeout() + 0.5)) +
             " s (train.comm_timeout_s): another rank died or hangs");
      std::this_thread::yield();
      if (ncclCommGetAsyncError(comm_, &r) != ncclSuccess) break;
    } while (r == ncclInProgress);
  }
  if (r != ncclSuccess)
    fail(std::string(call) + " failed: " + ncclGetErrorString(r) + " (" + (comm_ ? ncclGetLastError(comm_) : "") +
         "): another rank probably died");
}

void NcclCommunicator::synchronize(cudaStream_t s) {
  const auto deadline = deadline_after(host_.timeout());
  int pause_us = 0;
  for (int polls = 0;; ++polls) {
    const cudaError_t q = cudaStreamQuery(s);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) EBM_CUDA_CHECK(q);
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(comm_, &async) != ncclSuccess || (async != ncclSuccess && async != ncclInProgress))
      fail(std::string("NCCL reported ") + ncclGetErrorString(async) + ": another rank probably died");
    if (Clock::now() > deadline)
      fail("the device did not finish its step within " + std::to_string(int(host_.timeout() + 0.5)) +
           " s (train.comm_timeout_s): another rank died, hangs, or is stuck far behind; giving up");
    if (polls < 1000) continue;
    pause_us = std::min(1000, pause_us + 10);
    std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
  }
}

void NcclCommunicator::fail(const std::string& why) {
  if (comm_) {
    ncclCommAbort(comm_);  // unblocks the kernels of this rank waiting for a dead peer
    comm_ = nullptr;
  }
  throw CommError(why);
}

}  // namespace ebm::cuda
