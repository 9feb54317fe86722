#!/usr/bin/env bash
# The device check rehearsed on this machine, which has no GPU: bench/device_check.sh run in an environment
# shaped like the lent GPU machine's (DESIGN §7), to show that it configures with ✓ cuda, builds cold, runs
# what needs no GPU, and stops cleanly where a GPU is needed — before a lent machine's minutes are spent.
#
#   scripts/device_dry_run.sh [BUILD_DIR]      BUILD_DIR defaults to build-dryrun (emptied: a cold build)
#
# The shape, inside a private mount namespace (unshare -m: needs root), with /usr under an overlay whose
# upper layer is a temporary folder, so that nothing outside the namespace changes:
#   - no nlohmann/json, Eigen, GoogleTest, libpng, zlib, protobuf or pybind11 development files (headers, CMake and
#     pkg-config files, sources, static and unversioned libraries, protoc; the run-time libraries stay);
#   - no cuDNN, NCCL or cuRAND in the CUDA toolkit: they are laid out as their pip wheels lay them out,
#     nvidia/cudnn/{include,lib} (nvidia-cudnn-cu13), nvidia/nccl/{include,lib} (nvidia-nccl-cu13) and
#     nvidia/cu13/{include,lib} (CUDA 13's cuRAND), versioned .so names only, no __init__.py anywhere (so
#     nvidia.cudnn.__file__ is None), on PYTHONPATH;
#   - third_party/ filled by scripts/fetch_third_party.sh (run first, outside the namespace);
#   - EBM_DRY_RUN=1, with the part limits scaled for 2 cores (EBM_CHECK_LIMIT_SCALE=8, budget 2400 s); with
#     CI set, warnings are errors (the code paths without libpng, zlib and protobuf are compiled nowhere else).
# The device check's table, summary.json and logs are in BUILD_DIR/out. The script then checks what the
# summary says: ✓ cuda with cuDNN from the wheel, ✗ libpng, ✗ zlib, ✗ tensorboard, configure and build ok, tests_cuda and
# bench_cuda "stopped: no GPU here", every other part ok, and the device check's exit status 3.
# Then bench/gpu_sweep.sh (the kernel sweep, nvcc alone) in its dry run: it must build with no register spill, run its
# host reference and stop with exit 3 where a GPU is needed.
# Exit 0 when all of that holds, 1 otherwise. 3-6 minutes on 2 cores (the cold CUDA build is most of it); it
# is the last stage of scripts/test.sh. Run it before taking the device check or the sweep to a GPU machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${1:-$root/build-dryrun}")

if [[ ${EBM_DRY_RUN_INSIDE:-0} != 1 ]]; then
  [[ $(id -u) == 0 ]] || { echo "device_dry_run: needs root (unshare -m, mount)" >&2; exit 1; }
  command -v unshare > /dev/null || { echo "device_dry_run: unshare (util-linux) not found" >&2; exit 1; }
  "$root/scripts/fetch_third_party.sh"
  rm -rf "$build"
  mkdir -p "$build"
  tmp=$(mktemp -d /tmp/ebm-dry-run.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  start=$SECONDS
  rc=0
  EBM_DRY_RUN_INSIDE=1 EBM_DRY_RUN_TMP=$tmp unshare -m --propagation private bash "$0" "$build" || rc=$?
  echo "device_dry_run: $((SECONDS - start)) s in all"
  exit $rc
fi

# --- inside the namespace ---
tmp=$EBM_DRY_RUN_TMP
mkdir -p "$tmp"/{usr,upper,work,site}
mount --bind /usr "$tmp/usr"  # the real /usr, where the wheel layout's links point
mount -t overlay overlay -o "lowerdir=$tmp/usr,upperdir=$tmp/upper,workdir=$tmp/work" /usr
cuda=$(realpath /usr/local/cuda)  # /usr/local/cuda-13.0
real_cuda=$tmp/usr/${cuda#/usr/}
arch=$(gcc -print-multiarch 2> /dev/null || echo x86_64-linux-gnu)
lib=/usr/lib/$arch

# The wheels: headers copied, libraries linked under their versioned names (the wheels ship no others).
wheel() {  # wheel DIR HEADER_GLOB LIBRARY_GLOB
  local dir=$tmp/site/nvidia/$1
  mkdir -p "$dir/include" "$dir/lib"
  (cd "$real_cuda/include" && cp -r $2 "$dir/include/")
  for f in "$real_cuda"/lib/$3; do
    [[ -f $f && ! -L $f ]] && ln -s "$f" "$dir/lib/$(basename "$f")"
  done
  return 0
}
wheel cudnn 'cudnn*.h' 'libcudnn*.so.9'
wheel nccl 'nccl*' 'libnccl.so.2'
wheel cu13 'curand*.h' 'libcurand.so.10'

hidden=(
  /usr/include/nlohmann /usr/share/cmake/nlohmann_json /usr/share/pkgconfig/nlohmann_json.pc
  /usr/include/eigen3 /usr/share/eigen3 /usr/share/pkgconfig/eigen3.pc
  /usr/include/gtest /usr/include/gmock /usr/src/googletest /usr/src/gtest "$lib"/cmake/GTest
  "$lib"/libgtest* "$lib"/libgmock* "$lib"/pkgconfig/gtest* "$lib"/pkgconfig/gmock*
  /usr/include/png.h /usr/include/pngconf.h /usr/include/pnglibconf.h /usr/include/libpng /usr/include/libpng16
  "$lib"/libpng.so "$lib"/libpng16.so "$lib"/libpng*.a "$lib"/pkgconfig/libpng*
  /usr/include/zlib.h /usr/include/zconf.h "$lib"/libz.so "$lib"/libz.a "$lib"/pkgconfig/zlib.pc
  /usr/include/google/protobuf /usr/bin/protoc "$lib"/libprotobuf.so "$lib"/libprotobuf-lite.so "$lib"/libprotobuf*.a
  "$lib"/libprotoc.so "$lib"/libprotoc.a "$lib"/pkgconfig/protobuf*.pc "$lib"/cmake/protobuf
  /usr/include/pybind11 /usr/lib/cmake/pybind11 /usr/share/pkgconfig/pybind11.pc
  "$cuda"/include/cudnn*.h "$cuda"/lib/libcudnn* "$cuda"/include/nccl* "$cuda"/lib/libnccl*
  "$cuda"/include/curand*.h "$cuda"/lib/libcurand*
)
rm -rf "${hidden[@]}"

export PYTHONPATH=$tmp/site${PYTHONPATH:+:$PYTHONPATH}
echo "device_dry_run: hidden here: nlohmann/json, Eigen, GoogleTest, libpng, zlib, protobuf and pybind11 development files (and protoc); cuDNN, NCCL and cuRAND in $cuda"
python3 -c 'import nvidia.cudnn as m, os; print("device_dry_run: python module nvidia.cudnn: __file__", m.__file__, "__path__", list(m.__path__),
      "/ lib:", " ".join(sorted(os.listdir(os.path.join(list(m.__path__)[0], "lib")))))'
for f in /usr/include/nlohmann/json.hpp /usr/include/eigen3/Eigen/Core /usr/include/gtest/gtest.h /usr/include/png.h /usr/include/zlib.h \
         /usr/include/google/protobuf/message_lite.h /usr/bin/protoc /usr/include/pybind11/pybind11.h "$cuda/include/cudnn.h"; do
  [[ -e $f ]] && { echo "device_dry_run: $f is still visible" >&2; exit 1; }
done

cd "$root"
rc=0
werror=""
[[ -n ${CI:-} ]] && werror=-DEBM_WERROR=ON  # CI: the code without libpng, zlib and protobuf compiles only here
EBM_DRY_RUN=1 EBM_CHECK_BUDGET_S=2400 EBM_CHECK_LIMIT_SCALE=8 EBM_CHECK_CMAKE_ARGS=$werror OUT=$build/out \
  bash bench/device_check.sh "$build" || rc=$?

# --- the kernel sweep (bench/gpu_sweep.sh): nvcc alone builds it, ptxas finds no spill, it stops where a GPU is needed ---
sweep_rc=0
EBM_DRY_RUN=1 OUT=$build/sweep bash bench/gpu_sweep.sh "$build/sweep-build" > "$build/sweep.out" 2>&1 || sweep_rc=$?
tail -8 "$build/sweep.out"

# --- what the summary must say ---
python3 - "$build/out/summary.json" "$rc" "$sweep_rc" "$build/sweep/summary.txt" << 'PY'
import json, sys
s = json.load(open(sys.argv[1]))
rc = int(sys.argv[2])
sweep_rc, sweep = int(sys.argv[3]), open(sys.argv[4]).read() if __import__("os").path.exists(sys.argv[4]) else ""
parts = {p["name"]: p["status"] for p in s["parts"]}
checks = [
    ("the device check exited 3 (dry run: stopped where a GPU is needed)", rc == 3),
    ("configure: ✓ cuda", s["configure"].get("cuda") is True),
    ("configure: cuDNN from the pip wheel", "from the pip wheel" in s["configure"].get("cudnn", "")),
    ("configure: ✗ libpng, ✗ zlib", s["configure"].get("libpng") is False and s["configure"].get("zlib") is False),
    ("configure: ✗ tensorboard (protobuf hidden)", s["configure"].get("tensorboard") is False),
    ("configure and build ok", parts.get("configure") == "ok" and parts.get("build") == "ok"),
    ("tests_cuda and bench_cuda: stopped: no GPU here",
     all(parts.get(p, "").startswith("stopped: no GPU here") for p in ("tests_cuda", "bench_cuda"))),
    ("tests_rest ok", parts.get("tests_rest") == "ok"),
    ("epoch_cpu ok (trained through an epoch end without libpng and without TensorBoard files)",
     parts.get("epoch_cpu", "").startswith("ok")),
    ("optional_libs ok", parts.get("optional_libs") == "ok"),
    ("no part FAILED or timed out", not any(v.startswith(("FAILED", "TIMEOUT")) for v in parts.values())),
    ("gpu_sweep.sh: built with no spill, host reference ran, stopped where a GPU is needed (exit 3)",
     sweep_rc == 3 and "no spills" in sweep and "host reference ok" in sweep),
]
for what, ok in checks:
    print(f"device_dry_run: {'ok  ' if ok else 'FAIL'} {what}")
build_s = next((p["seconds"] for p in s["parts"] if p["name"] == "build"), None)
print(f"device_dry_run: cold build {build_s} s on {s['versions'].get('nproc')} cores; the device check took {s['total_s']} s")
sys.exit(0 if all(ok for _, ok in checks) else 1)
PY
