#!/usr/bin/env bash
# The device check's verdicts and summary (bench/device_summary.py) on made-up part outputs: a bench_cuda run
# with CUDA graphs off fails, torch.compile past its cap is skipped, the exit status says which case it is,
# summary.json holds the figures and ratios. (The whole device check: scripts/device_dry_run.sh here, and the
# GPU machine.)
#   bash tests/cli_device_summary.sh BUILD_DIR SOURCE_DIR
set -u
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
summary="$src/bench/device_summary.py"

# verdict NAME WANT PART JSON_OR_TEXT: bench-verdict on an output holding that last line prints WANT...
verdict() {
  local name=$1 want=$2 part=$3
  printf 'some log line\n%s\n' "$4" > "$tmp/$part.out"
  local got
  got=$(python3 "$summary" bench-verdict "$part" "$tmp/$part.out" "$tmp/bench.jsonl")
  if [[ $got == "$want"* ]]; then ok; else bad "$name: got '$got', want '$want...'"; fi
}
cuda='{"backend":"cuda: NVIDIA H200","kind":"cuda","graphs":true,"graph_captures":1,"deterministic":true,"ms_per_train_step":4.0,"ms_per_langevin_step":0.03,"epoch_s_mnist":1.876}'
verdict "graphs on" "ok" bench_cuda "$cuda"
verdict "graphs off" "FAILED: CUDA graphs are off (graphs: false, graph_captures: 0)" bench_cuda \
  "${cuda/\"graphs\":true,\"graph_captures\":1/\"graphs\":false,\"graph_captures\":0}"
verdict "graphs missing" "FAILED: CUDA graphs are off (graphs: null" bench_cuda "${cuda/\"graphs\":true,/}"
verdict "fell back to the CPU" "FAILED: ran on the 'cpu' backend, not cuda" bench_cuda "${cuda/\"kind\":\"cuda\"/\"kind\":\"cpu\"}"
verdict "no JSON" "FAILED: no JSON line in its output" bench_cuda "ebm_bench: backend cuda: no CUDA device"
verdict "compile past its cap" "skipped: compiling and warm-up took over 60 s" torch_compile \
  '{"skipped": "compiling and warm-up took over 60 s", "kind": "torch", "compile": true}'
verdict "cpu: graphs do not matter" "ok" bench_cpu '{"kind":"cpu","graphs":false,"ms_per_train_step":250.0,"ms_per_langevin_step":2.4}'
: > "$tmp/bench.jsonl"
verdict "torch eager" "ok" torch_eager '{"kind":"torch","ms_per_train_step":12.0,"ms_per_langevin_step":0.12,"epoch_s_mnist":5.6}'
verdict "ours" "ok" bench_cuda "$cuda"

# summarize: exit status and summary.json, for parts in each state.
# status DIR_NAME DRY_RUN WANT_RC PARTS...: PARTS are "name|status".
status() {
  local name=$1 dry=$2 want=$3
  shift 3
  local d=$tmp/$name
  mkdir -p "$d/out" "$d/build"
  cp "$tmp/bench.jsonl" "$d/out/"
  printf 'dry_run=%s\nbudget_s=420\nconfigure.cuda=true\nversion.nproc=16\n' "$dry" > "$d/out/env.txt"
  for p in "$@"; do printf '%s\t%s\t3\t60\n' "${p%%|*}" "${p#*|}" >> "$d/out/parts.tsv"; done
  python3 "$summary" summarize "$d/out" "$d/build" > "$d/table.txt"
  local rc=$?
  if ((rc == want)); then ok; else bad "$name: exit $rc, want $want; $(head -n 1 "$d/table.txt")"; fi
}
status all_ok 0 0 "configure|ok" "build|ok" "tests_cuda|ok" "bench_cuda|ok" "torch_compile|skipped: compiling and warm-up took over 60 s"
status graphs_off 0 1 "configure|ok" "build|ok" "bench_cuda|FAILED: CUDA graphs are off (graphs: false, graph_captures: 0)"
status timeout 0 1 "configure|ok" "build|ok" "tests_cuda|TIMEOUT after 90s"
status no_cuda 0 2 "configure|FAILED: the CUDA backend was not configured"
status build_failed 0 2 "configure|ok" "build|FAILED (exit 1)"
status dry_run 1 3 "configure|ok" "build|ok" "tests_cuda|stopped: no GPU here (12 tests skipped: no CUDA device)" \
  "bench_cuda|stopped: no GPU here" "tests_rest|ok"
status dry_run_failing 1 1 "configure|ok" "build|ok" "tests_cuda|stopped: no GPU here" "tests_rest|FAILED (exit 8)"
status stopped_early 0 1 "env|ok" "configure|ok"  # killed after configure: nothing was tested, not "passed"
status no_gpu 0 1 "env|ok" "gpu|FAILED: no GPU (nvidia-smi lists none) and not a dry run"

# Bad input to the summariser: one line and exit 2, never a traceback.
mkdir -p "$tmp/malformed/out" "$tmp/malformed/build"
printf 'env\tok\tabc\n' > "$tmp/malformed/out/parts.tsv"
o=$(python3 "$summary" summarize "$tmp/malformed/out" "$tmp/malformed/build" 2>&1); rc=$?
[[ $rc == 2 && $(wc -l <<< "$o") == 1 && $o == *"malformed line"* ]] && ok || bad "malformed parts.tsv: exit $rc: $o"
o=$(python3 "$summary" summarize "$tmp/nowhere" "$tmp/nowhere" 2>&1); rc=$?
[[ $rc == 2 && $(wc -l <<< "$o") == 1 ]] && ok || bad "missing folder: exit $rc: $o"

# summary.json of the all_ok case: the figures, the graphs flag and the ratio to PyTorch (12 ms / 4 ms = 3x).
python3 - "$tmp/all_ok/out/summary.json" << 'PY' && ok || bad "summary.json: see above"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["mode"] == "device" and s["exit_status"] == 0 and s["verdict"] == "passed", s
assert s["graphs"] is True and s["graph_captures"] == 1, s["graphs"]
assert [p["name"] for p in s["parts"]] == ["configure", "build", "tests_cuda", "bench_cuda", "torch_compile"]
assert s["parts"][0] == {"name": "configure", "status": "ok", "seconds": 3, "limit_s": 60}, s["parts"][0]
assert s["bench"]["bench_cuda"]["ms_per_train_step"] == 4.0 and s["bench"]["torch_eager"]["ms_per_train_step"] == 12.0
assert abs(s["ratios"]["torch_eager"]["train_step"] - 3.0) < 1e-9 and abs(s["ratios"]["torch_eager"]["langevin_step"] - 4.0) < 1e-9, s["ratios"]
assert s["configure"] == {"cuda": True} and s["versions"] == {"nproc": "16"} and s["budget_s"] == 420
PY
grep -q "ebm cuda vs torch_eager: train step 3.0x, Langevin step 4.0x" "$tmp/all_ok/table.txt" && ok || bad "table: $(cat "$tmp/all_ok/table.txt")"
grep -q "dry run passed: stopped where a GPU is needed" "$tmp/dry_run/table.txt" && ok || bad "dry-run table: $(head -n 1 "$tmp/dry_run/table.txt")"

# json-part: ebm_eval's line and the TensorBoard reader's, into their files; a reader that found no image is a failure.
printf 'log\n{"is": 8.1, "fid": 240.5, "class_hist": [1,2]}\n' > "$tmp/eval.out"
got=$(python3 "$summary" json-part eval "$tmp/eval.out" "$tmp/eval.json" 0)
[[ $got == "ok: IS 8.1, FID 240.5" && -s $tmp/eval.json ]] && ok || bad "json-part eval: $got"
got=$(python3 "$summary" json-part eval "$tmp/eval.out" "$tmp/eval2.json" 3)
[[ $got == "FAILED (exit 3)"* && ! -e $tmp/eval2.json ]] && ok || bad "json-part eval, exit 3: $got"
printf '{"scalars": {"loss": 10, "cdiv": 10}, "images": {}, "histograms": {}}\n' > "$tmp/tb.out"
got=$(python3 "$summary" json-part tensorboard "$tmp/tb.out" "$tmp/tb.json" 0)
[[ $got == "FAILED: the reader found 2 scalar and 0 image tags" ]] && ok || bad "json-part tensorboard: $got"
printf '{"scalars": {"loss": 10}, "images": {"samples": 10}, "histograms": {"E": 20}}\n' > "$tmp/tb.out"
got=$(python3 "$summary" json-part tensorboard "$tmp/tb.out" "$tmp/tb.json" 0)
[[ $got == "ok: 1 scalar tags (10 events at most), 1 image, 1 histogram" ]] && ok || bad "json-part tensorboard: $got"

# breakdown: ncu's CSV (a preamble, then quoted rows) of both paths, kernels summed and sorted by time.
ncu_csv() {  # ncu_csv FILE (kernel us)...
  local f=$1
  shift
  { echo '==PROF== Connected to process 1'
    echo '"ID","Kernel Name","Metric Name","Metric Unit","Metric Value"'
    local i=0
    while (($#)); do echo "\"$i\",\"$1(float*)\",\"gpu__time_duration.sum\",\"ns\",\"$2\""; i=$((i + 1)); shift 2; done
  } > "$f"
}
ncu_csv "$tmp/l.csv" conv_fwd 3000 swish 1000 conv_fwd 3000 adam 500
ncu_csv "$tmp/f.csv" tiled_chain_kernel 9000 tiled_pack_kernel 200 adam 500
got=$(python3 "$summary" breakdown "$tmp/breakdown.json" "$tmp/l.csv" "$tmp/f.csv")
[[ $got == "ok: layers 8 µs in 4 kernels; fused 10 µs in 3 kernels" ]] && ok || bad "breakdown: $got"
python3 - "$tmp/breakdown.json" << 'PY' && ok || bad "breakdown.json"
import json, sys
b = json.load(open(sys.argv[1]))
assert b["layers"]["kernels"][0] == {"kernel": "conv_fwd", "launches": 2, "us": 6.0}, b["layers"]
assert b["fused"]["total_us"] == 9.7 and b["fused"]["kernels"][-1]["kernel"] == "tiled_pack_kernel", b["fused"]
PY

# A device run's summary comes with its record for bench/results/: named by date, GPU and commit, with the versions.
mkdir -p "$tmp/result/out" "$tmp/result/build"
printf 'configure\tok\t3\t60\nbuild\tok\t40\t240\ntests_cuda\tok\t20\t90\nbench_cuda\tok\t30\t90\n' > "$tmp/result/out/parts.tsv"
printf 'dry_run=0\nversion.gpu=NVIDIA H100 80GB HBM3, 580.65.06, 81559 MiB, Default\nversion.torch=2.11.0 13.0 91900 True\nversion.nvcc=13.0\nconfigure.cudnn=9.19.0 from the pip wheel\ncommit=abc1234\ndate=2026-12-07\n' > "$tmp/result/out/env.txt"
cp "$tmp/eval.json" "$tmp/result/out/eval.json"
python3 "$summary" summarize "$tmp/result/out" "$tmp/result/build" > /dev/null
python3 - "$tmp/result/out/result-2026-12-07-h100-80gb-hbm3-abc1234.json" << 'PY' && ok || bad "result file: $(ls "$tmp/result/out")"
import json, sys
r = json.load(open(sys.argv[1]))
assert (r["gpu"], r["driver"], r["cuda_nvcc"], r["torch"], r["commit"]) == ("NVIDIA H100 80GB HBM3", "580.65.06", "13.0", "2.11.0", "abc1234"), r
assert r["cudnn"] == "9.19.0 from the pip wheel" and r["summary"]["eval"]["fid"] == 240.5, r
PY

# The scripts parse (the GPU machine is the first to run some of their paths).
bash -n "$src/bench/device_check.sh" && bash -n "$src/bench/gpu_sweep.sh" && bash -n "$src/scripts/device_dry_run.sh" && bash -n "$src/scripts/fetch_third_party.sh" && ok || bad "bash -n"
python3 -c 'import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]' "$src/bench/torch_step.py" \
  "$src/bench/device_summary.py" && ok || bad "python syntax"

echo "cli_device_summary: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
