#!/usr/bin/env python3
"""The device check's verdicts, table and JSON summary (bench/device_check.sh runs it; python3, stdlib only).

  device_summary.py bench-verdict PART OUTPUT BENCH_JSONL
      Reads the last JSON line of a timing part's OUTPUT, appends {"part": PART, "result": ...} to
      BENCH_JSONL and prints the part's status on one line: "ok", "skipped: <why>" (a result saying
      {"skipped": why}, as bench/torch_step.py --compile past its cap) or "FAILED: <why>". bench_cuda fails
      when ebm_bench ran on another backend or reports "graphs": false: the training step is meant to
      replay as one CUDA graph, and a run without it times something else.
  device_summary.py json-part PART OUTPUT DEST RC
      A part whose output ends in one JSON object (ebm_eval, the TensorBoard reader): writes it to DEST and prints
      the part's status: "ok: <what it holds>", or "FAILED: ..." (exit RC ≠ 0, no JSON, or for tensorboard no
      scalar or image tag).
  device_summary.py breakdown DEST LAYERS_CSV FUSED_CSV
      ncu's CSV (--metrics gpu__time_duration.sum --print-units base --csv) of one training step, per-layer and
      fused: per path, each kernel's launches and total GPU time (µs), largest first, into DEST (JSON); prints
      "ok: ..." with each path's total.
  device_summary.py summarize DIR BUILD
      Reads DIR/parts.tsv (name, status, seconds, limit; tab-separated, one part a line), DIR/env.txt
      (key=value), DIR/bench.jsonl, DIR/metrics.jsonl (the main job's, if any), DIR/eval.json,
      DIR/tensorboard.json, DIR/breakdown.json and the tests parts' ctest output in BUILD/<part>.out; writes
      DIR/summary.json, DIR/summary.txt and DIR/result-<date>-<gpu>-<commit>.json (the summary with the versions and
      the commit measured, for bench/results/), prints the table, and exits with the check's status:
        0  every part passed (or was skipped for a reason that is not a failure)
        1  a part FAILED or ran past its limit (TIMEOUT)
        2  nothing could be tested: the CUDA backend was not configured, or the build failed
        3  a dry run (EBM_DRY_RUN=1) on a machine without a GPU: everything that runs without one passed,
           and the parts that need one say "stopped: no GPU here"
"""
import csv
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

NO_GPU = "stopped: no GPU here"


def last_json(path):
    """The last line of a file that parses as a JSON object, or None."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def bench_verdict(part, result):
    if result is None:
        return "FAILED: no JSON line in its output"
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    ms = result.get("ms_per_train_step")
    if not isinstance(ms, (int, float)) or not ms > 0:
        return f"FAILED: no ms_per_train_step in its JSON ({json.dumps(result)[:120]})"
    if part == "bench_cuda":
        if result.get("kind") != "cuda":
            return f"FAILED: ran on the {result.get('kind')!r} backend, not cuda"
        if result.get("graphs") is not True:
            return (f"FAILED: CUDA graphs are off (graphs: {json.dumps(result.get('graphs'))}, graph_captures: "
                    f"{result.get('graph_captures')}): the step was timed launching every kernel")
    return "ok"


def cmd_bench_verdict(part, output, bench_jsonl):
    result = last_json(output)
    if result is not None:
        with open(bench_jsonl, "a") as f:
            f.write(json.dumps({"part": part, "result": result}) + "\n")
    print(bench_verdict(part, result))
    return 0


def cmd_json_part(part, output, dest, rc):
    result = last_json(output)
    if int(rc) != 0:
        print(f"FAILED (exit {rc}): {Path(output).read_text(errors='replace').strip().splitlines()[-1:] or ''}"[:150])
        return 0
    if result is None:
        print("FAILED: no JSON line in its output")
        return 0
    Path(dest).write_text(json.dumps(result, indent=2) + "\n")
    if part == "tensorboard":
        sc, im, hi = (result.get(k) or {} for k in ("scalars", "images", "histograms"))
        if not sc or not im:
            print(f"FAILED: the reader found {len(sc)} scalar and {len(im)} image tags")
        else:
            print(f"ok: {len(sc)} scalar tags ({max(sc.values())} events at most), {len(im)} image, {len(hi)} histogram")
        return 0
    if part == "eval":
        print(f"ok: IS {result.get('is')}, FID {result.get('fid')}")
        return 0
    print("ok")
    return 0


def read_breakdown(path):
    """ncu --csv rows of gpu__time_duration.sum → {kernel: [launches, µs]}."""
    per = defaultdict(lambda: [0, 0.0])
    with open(path, newline="", errors="replace") as f:
        rows = [r for r in csv.reader(line for line in f if line.startswith('"'))]
    if not rows:
        return {}
    head = rows[0]
    try:
        ki, mi, vi, ui = (head.index(k) for k in ("Kernel Name", "Metric Name", "Metric Value", "Metric Unit"))
    except ValueError:
        return {}
    for r in rows[1:]:
        if len(r) <= max(ki, mi, vi, ui) or r[mi] != "gpu__time_duration.sum":
            continue
        scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}.get(r[ui], 1e-3)
        name = re.sub(r"\(.*", "", r[ki]).strip() or r[ki]
        per[name][0] += 1
        per[name][1] += float(r[vi].replace(",", "")) * scale
    return per


def cmd_breakdown(dest, layers_csv, fused_csv):
    out, said = {}, []
    for path, csv_path in (("layers", layers_csv), ("fused", fused_csv)):
        per = read_breakdown(csv_path)
        total = sum(v[1] for v in per.values())
        out[path] = {"total_us": round(total, 1), "kernels": [
            {"kernel": k, "launches": v[0], "us": round(v[1], 2)} for k, v in sorted(per.items(), key=lambda kv: -kv[1][1])]}
        said.append(f"{path} {total:.0f} µs in {sum(v[0] for v in per.values())} kernels")
    out["note"] = "one training step with 10 Langevin steps (sampler.steps=10), every graph node profiled alone"
    Path(dest).write_text(json.dumps(out, indent=2) + "\n")
    print(("ok: " if all(out[p]["kernels"] for p in ("layers", "fused")) else "FAILED: no kernel rows: ") + "; ".join(said))
    return 0


def read_parts(path):
    parts = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        name, status, seconds, limit = (line.split("\t") + ["", "", ""])[:4]
        if not status or not re.fullmatch(r"\d*", seconds) or not re.fullmatch(r"\d*", limit):
            raise ValueError(f"{path}: malformed line {line!r} (want name, status, seconds, limit)")
        parts.append({"name": name, "status": status, "seconds": int(seconds or 0),
                      "limit_s": int(limit) if limit else None})
    return parts


def read_env(path):
    env = {}
    try:
        for line in Path(path).read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                env[key.strip()] = value.strip()
    except OSError:
        pass
    return env


def ctest_counts(path):
    """Counts from ctest's closing lines: total, passed, failed, skipped; None when it never got there."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"(\d+)% tests passed, (\d+) tests? failed out of (\d+)", text)
    if not m:
        return {"total": 0, "passed": 0, "failed": 0, "skipped": 0} if "No tests were found" in text else None
    failed, total = int(m.group(2)), int(m.group(3))
    skipped = len(re.findall(r"^\s*\d+ - .*\(Skipped\)\s*$", text, re.M))
    return {"total": total, "passed": total - failed - skipped, "failed": failed, "skipped": skipped}


def exit_status(parts, dry_run):
    statuses = {p["name"]: p["status"] for p in parts}
    for name in ("configure", "build"):
        if name in statuses and statuses[name] != "ok":
            return 2
    if any(s.startswith(("FAILED", "TIMEOUT")) for s in statuses.values()):
        return 1
    # A check that stopped early (killed, or cut off) passed nothing: these parts always record a status.
    if any(name not in statuses for name in ("configure", "build", "tests_cuda", "bench_cuda")):
        return 1
    if dry_run and any(s.startswith(NO_GPU) for s in statuses.values()):
        return 3
    return 0


VERDICTS = {0: "passed", 1: "FAILED", 2: "FAILED: nothing tested (the CUDA backend was not configured, or the build failed)",
            3: "dry run passed: stopped where a GPU is needed (no GPU here)"}


def cmd_summarize(out_dir, build_dir):
    out, build = Path(out_dir), Path(build_dir)
    parts = read_parts(out / "parts.tsv")
    env = read_env(out / "env.txt")
    dry_run = env.get("dry_run") == "1"
    bench = {}
    try:
        for line in (out / "bench.jsonl").read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                bench[row["part"]] = row["result"]
    except (OSError, ValueError):
        pass
    tests = {name: ctest_counts(build / f"{name}.out") for name in ("tests_cuda", "tests_rest")
             if any(p["name"] == name for p in parts)}
    epoch = None  # the epoch part's last epoch record (the GPU epoch; epoch_cpu in a dry run)
    try:
        lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if l.strip()]
        epochs = [l for l in lines if l.get("event") == "epoch"]
        last = epochs[-1] if epochs else (lines[-1] if lines else None)
        if last is not None:
            epoch = {"part": env.get("epoch_part", "epoch"), "last": last}
    except (OSError, ValueError):
        pass

    ours = bench.get("bench_cuda")
    ratios = {}
    for ref in ("torch_eager", "torch_compile", "bench_cpu"):
        r = bench.get(ref)
        if (ours and r and "skipped" not in r and "skipped" not in ours
                and all(isinstance(x.get("ms_per_train_step"), (int, float)) and x["ms_per_train_step"] > 0
                        for x in (ours, r))):
            ratios[ref] = {"train_step": r["ms_per_train_step"] / ours["ms_per_train_step"]}
            if r.get("ms_per_langevin_step") and ours.get("ms_per_langevin_step"):
                ratios[ref]["langevin_step"] = r["ms_per_langevin_step"] / ours["ms_per_langevin_step"]

    def load(name):
        try:
            return json.loads((out / name).read_text())
        except (OSError, ValueError):
            return None
    evaluation, tensorboard, breakdown = load("eval.json"), load("tensorboard.json"), load("breakdown.json")

    status = exit_status(parts, dry_run)
    summary = {
        "mode": "dry-run" if dry_run else "device",
        "exit_status": status,
        "verdict": VERDICTS[status],
        "budget_s": int(env.get("budget_s", 0) or 0),
        "total_s": int(env.get("total_s", 0) or 0) or sum(p["seconds"] for p in parts),
        "parts": parts,
        "graphs": ours.get("graphs") if ours else None,
        "graph_captures": ours.get("graph_captures") if ours else None,
        "bench": bench,
        "ratios": ratios,
        "tests": tests,
        "epoch": epoch,
        "eval": evaluation,
        "tensorboard": tensorboard,
        "breakdown": breakdown,
        "samples_png": env.get("samples_png"),
        "configure": {k[len("configure."):]: {"true": True, "false": False}.get(v, v)
                      for k, v in env.items() if k.startswith("configure.")},
        "versions": {k[len("version."):]: v for k, v in env.items() if k.startswith("version.")},
        "commit": env.get("commit", "unknown"),
        "date": env.get("date", ""),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not dry_run:  # a device run's record, named as bench/results/ keeps it
        gpu_fields = [x.strip() for x in summary["versions"].get("gpu", "none").split(",")]
        slug = re.sub(r"[^a-z0-9]+", "-", gpu_fields[0].lower().replace("nvidia", "")).strip("-") or "gpu"
        torch = summary["versions"].get("torch", "none").split()
        result = {"date": summary["date"], "commit": summary["commit"], "script": "bench/device_check.sh",
                  "gpu": gpu_fields[0], "driver": gpu_fields[1] if len(gpu_fields) > 1 else None,
                  "cuda_nvcc": summary["versions"].get("nvcc"), "cudnn": summary["configure"].get("cudnn"),
                  "torch": torch[0] if torch else None, "torch_cuda": torch[1] if len(torch) > 1 else None,
                  "summary": summary}
        (out / f"result-{summary['date']}-{slug}-{summary['commit']}.json").write_text(json.dumps(result, indent=2) + "\n")

    lines = [f"device check ({summary['mode']}): {summary['verdict']} (exit {status}), "
             f"{summary['total_s']} s of a {summary['budget_s']} s budget", "",
             f"  {'part':<14} {'status':<58} {'s':>5} {'limit':>6}"]
    for p in parts:
        status_text = p["status"] if len(p["status"]) <= 58 else p["status"][:55] + "..."
        lines.append(f"  {p['name']:<14} {status_text:<58} {p['seconds']:>5} {p['limit_s'] or '':>6}")
    for name, c in tests.items():
        if c:
            lines.append(f"  {name}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped of {c['total']}")
    timed = {k: v for k, v in bench.items() if "skipped" not in v}
    if timed:
        lines += ["", "timings (batch 128, 100 Langevin steps per training step; ebm: train step = mean of one run with one "
                  "read-back, Langevin step = chain-length difference; torch: medians of synced steps):",
                  f"  {'part':<14} {'ms/train step':>14} {'ms/Langevin step':>17} {'epoch s':>8}  graphs  backend"]
        for part, r in timed.items():
            lang = r.get("ms_per_langevin_step")
            lines.append(f"  {part:<14} {r['ms_per_train_step']:>14.2f} {(lang if lang is not None else float('nan')):>17.3f} "
                         f"{r.get('epoch_s_mnist', float('nan')):>8.1f}  {json.dumps(r.get('graphs', '-')):<6}  {r.get('backend', '')}")
        for ref, q in ratios.items():
            lines.append(f"  ebm cuda vs {ref}: train step {q['train_step']:.1f}x"
                         + (f", Langevin step {q['langevin_step']:.1f}x" if "langevin_step" in q else ""))
        fused = (ours or {}).get("fused")
        if fused:  # ebm_bench's second run, cuda.langevin "fused" (the top-level figures are the per-layer path's)
            sp = (ours or {}).get("fused_speedup") or {}
            lang = fused.get("ms_per_langevin_step")
            lines.append(f"  ebm cuda, Langevin path {fused.get('langevin')!s}: train step {fused.get('ms_per_train_step', float('nan')):.2f} ms, "
                         f"Langevin step {(lang if lang is not None else float('nan')):.3f} ms; per-layer / fused: "
                         f"train step {sp.get('train_step') or float('nan'):.2f}x, Langevin step {sp.get('langevin_step') or float('nan'):.2f}x")
    for part, r in bench.items():
        if "skipped" in r:
            lines.append(f"  {part}: skipped: {r['skipped']}")
    chains = (ours or {}).get("chains")
    if chains:
        lines.append("  chain kernels (ebm_bench --chain all; cuda.langevin fused):")
        for k, c in chains.items():
            lang = c.get("ms_per_langevin_step")
            lines.append(f"    {k:<9} ran {c.get('chain')!s:<9} train step {c.get('ms_per_train_step') or float('nan'):8.2f} ms, "
                         f"Langevin step {(lang if lang is not None else float('nan')) * 1000:8.1f} µs")
    if epoch:
        lines += ["", f"{epoch['part']}: {json.dumps(epoch['last'])}"]
    if evaluation:
        lines.append(f"eval: IS {evaluation.get('is')}, FID {evaluation.get('fid')}, classes {evaluation.get('class_hist')}")
    if tensorboard:
        lines.append("tensorboard: " + ", ".join(f"{kind} {len(tags)} tags" for kind, tags in tensorboard.items()))
    if breakdown:
        for path in ("layers", "fused"):
            b = breakdown.get(path) or {}
            top = ", ".join(f"{k['kernel'][:40]} {k['us']:.0f} µs×{k['launches']}" for k in (b.get("kernels") or [])[:4])
            lines.append(f"breakdown {path}: {b.get('total_us')} µs a step (10 Langevin steps): {top}")
    text = "\n".join(line.rstrip() for line in lines)
    print(text)
    (out / "summary.txt").write_text(text + "\n")
    return status


def main(argv):
    if len(argv) == 2 and argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        if len(argv) == 5 and argv[1] == "bench-verdict":
            return cmd_bench_verdict(argv[2], argv[3], argv[4])
        if len(argv) == 4 and argv[1] == "summarize":
            return cmd_summarize(argv[2], argv[3])
        if len(argv) == 6 and argv[1] == "json-part":
            return cmd_json_part(argv[2], argv[3], argv[4], argv[5])
        if len(argv) == 5 and argv[1] == "breakdown":
            return cmd_breakdown(argv[2], argv[3], argv[4])
    except (OSError, ValueError) as e:  # one line, never a traceback
        sys.stderr.write(f"device_summary.py: {e}\n")
        return 2
    sys.stderr.write("usage: device_summary.py bench-verdict PART OUTPUT BENCH_JSONL | summarize DIR BUILD | "
                     "json-part PART OUTPUT DEST RC | breakdown DEST LAYERS_CSV FUSED_CSV\n")
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv))
