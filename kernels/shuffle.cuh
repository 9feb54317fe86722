// The training set's per-epoch permutation, made on the device (shuffle.cu, a separate translation unit so
// Thrust's templates compile once).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ebm::cuda {

// perm (n) ← 0, 1, ..., n−1: the order before the first begin_epoch, as on the CPU.
void identity_permutation(int32_t* perm, int64_t n, cudaStream_t s);

// perm (n) ← a uniformly random permutation, deterministic in (seed, epoch): each index gets a 64-bit key
// from Philox stream kShuffle at block (epoch << 32) + i and the indices are sorted by key (keys: n scratch).
// Not the CPU backend's permutation (a sequential Fisher–Yates), which the parity tests avoid by training
// on the identity order.
void shuffle_permutation(int32_t* perm, uint64_t* keys, int64_t n, uint64_t seed, int64_t epoch, cudaStream_t s);

}  // namespace ebm::cuda
