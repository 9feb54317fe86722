// The Langevin update in one pass over x (DESIGN §1): the descend half of step k (gradient clip, step, clip)
// fused with the perturb half of step k+1 (x + noise·N(0,1), clip), so a K-step chain launches K+1 update
// kernels. Per-element math from kernels/ebm_math.hpp, noise from kernels/random.cuh. Launcher (kernel in
// langevin.cu); returns cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ebm::cuda {

// Where the normals of one update come from: element e's normal is element e of stream `stream` at block
// *offset + add (seed *seed): read from device memory, so a graph replay sees that replay's values.
struct NoiseSource {
  const uint64_t* seed;
  const uint64_t* offset;
  uint64_t stream;
  uint64_t add;
};

// x (len): when `descend`, x ← clip(x − step·clip(−dfdx, ±grad_clip), −1, 1); then when `perturb`,
// x ← clip(x + noise·N(0,1), −1, 1).
[[nodiscard]] cudaError_t langevin_update(float* x, const float* dfdx, int64_t len, float step_size, float grad_clip,
                                          float noise, const NoiseSource& src, bool descend, bool perturb,
                                          cudaStream_t s);

}  // namespace ebm::cuda
