#include "host/eval/backend_factory.hpp"

#include "engine/cpu/cpu_backend.hpp"
#include "engine/error.hpp"
#ifdef EBM_HAVE_CUDA
#include "engine/cuda/cuda_backend.hpp"
#endif

namespace ebm {

bool cuda_usable(std::string* why_not) {
#ifdef EBM_HAVE_CUDA
  return cuda_device_count(why_not) > 0;
#else
  if (why_not) *why_not = "this build has no CUDA backend (no CUDA toolkit/cuDNN found at configure time)";
  return false;
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& which, const EngineOptions& opt) {
  std::string why;
  if (which == "cpu" || (which == "auto" && !cuda_usable(&why))) return std::make_unique<CpuBackend>(opt);
  if (which == "cuda" || which == "auto") {
    if (!cuda_usable(&why))  // worded for the tools' flag, the config key and the Python argument alike
      user_fail("backend cuda: ", why, "; use the cpu backend (--backend cpu, backend=\"cpu\"), or auto (CUDA when usable)");
#ifdef EBM_HAVE_CUDA
    return make_cuda_backend(opt);
#endif
  }
  user_fail("backend: expected auto, cpu or cuda, got \"", which, "\"");
}

}  // namespace ebm
