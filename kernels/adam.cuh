// Adam (Keras form, kernels/ebm_math.hpp) over the flat parameter buffer in one launch, and the weights' EMA. The step count and
// the bias-corrected rate live in device memory, so a captured train step replays with the right t.
// Launcher (kernels in adam.cu); returns cudaGetLastError().
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_state.cuh"

namespace ebm::cuda {

// st->adam_t += 1, then p, m, v (n) updated from g (n) with st's lr, betas, eps.
[[nodiscard]] cudaError_t adam_step(float* p, float* m, float* v, const float* g, int64_t n, DeviceState* st,
                                    cudaStream_t s);

// EMA of the weights after an Adam update: ema (n) ← decay·ema + (1 − decay)·p (kernels/ebm_math.hpp
// ema_update: the CPU's bits). `decay` is the run's constant, so a captured launch may bake it in.
[[nodiscard]] cudaError_t ema_step(float* ema, const float* p, int64_t n, double decay, cudaStream_t s);

}  // namespace ebm::cuda
