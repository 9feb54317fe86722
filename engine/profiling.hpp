// Named ranges for Nsight timelines: `EBM_PROFILE_RANGE("checkpoint");` opens a range that closes at the end
// of the enclosing scope. Built with EBM_NVTX (CMake option EBM_ENABLE_NVTX, on where the CUDA toolkit's
// header-only NVTX v3 is found) it pushes an NVTX range in the default domain, as engine/cuda/cuda_check.cuh's
// ranges do, so `nsys stats --report nvtx_sum` lists both side by side; without EBM_NVTX it compiles to nothing.
// The only header pulled in is <nvtx3/nvToolsExt.h> (no CUDA runtime), so host and engine code may use it.
// A range opened while a stream is being captured into a CUDA graph is recorded once, at capture, and not
// when the graph is replayed: time graph replays with a range around the launch.
#pragma once

#if EBM_NVTX
#include <nvtx3/nvToolsExt.h>
#endif

namespace ebm {

// What a range is without EBM_NVTX: an empty object the optimizer removes. A distinct type from the NVTX one
// (not one class whose body depends on the macro), so objects built with and without EBM_NVTX link together
// without two definitions of one class.
class NoProfileRange {
 public:
  explicit constexpr NoProfileRange(const char*) noexcept {}
  NoProfileRange(const NoProfileRange&) = delete;
  NoProfileRange& operator=(const NoProfileRange&) = delete;
};

// kNvtxEnabled: const at namespace scope, so each translation unit has its own (no clash between modes).
#if EBM_NVTX
class NvtxProfileRange {
 public:
  // name: a literal in practice; nsys and ncu read it during the call.
  explicit NvtxProfileRange(const char* name) noexcept { nvtxRangePushA(name); }
  ~NvtxProfileRange() { nvtxRangePop(); }
  NvtxProfileRange(const NvtxProfileRange&) = delete;
  NvtxProfileRange& operator=(const NvtxProfileRange&) = delete;
};
using ProfileRange = NvtxProfileRange;
constexpr bool kNvtxEnabled = true;
#else
using ProfileRange = NoProfileRange;
constexpr bool kNvtxEnabled = false;
#endif

}  // namespace ebm

#define EBM_PROFILE_CONCAT_(a, b) a##b
#define EBM_PROFILE_CONCAT(a, b) EBM_PROFILE_CONCAT_(a, b)
// One statement; several in one scope nest in the order written. The name is type-checked in both builds.
#define EBM_PROFILE_RANGE(name) \
  [[maybe_unused]] const ::ebm::ProfileRange EBM_PROFILE_CONCAT(ebm_profile_range_, __COUNTER__)(name)
