"""What is committed shows nothing of the machine that made it: the executed notebook's outputs, and the device runs'
result files, name paths relative to the repository (a path such as /work/main/build/python or /tmp/x/run
says where one machine kept its checkout, and means nothing to a reader)."""
import json
import os
import re
from pathlib import Path

SOURCE = Path(os.environ.get("EBM_SOURCE_DIR") or Path(__file__).resolve().parents[2])

# An absolute path of two components or more, where a path would start: after a space, a quote, a bracket or '='.
ABSOLUTE = re.compile(r"""(?:^|[\s'"(\[=])(/[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+)""")


def _absolute_paths(text):
    return [m.group(1) for m in ABSOLUTE.finditer(text)]


def test_the_path_finder_finds_paths_and_only_paths():
    assert _absolute_paths("ebm_engine 0.1.0 from /work/main/build/python\n") == ["/work/main/build/python"]
    assert _absolute_paths("run folder '/tmp/x/run'") == ["/tmp/x/run"]
    assert _absolute_paths("ebm_engine 0.1.0 from build/python; 36.7 ms/step, epoch 1/10, (1/10)") == []


def test_notebook_outputs_name_no_absolute_paths():
    notebooks = sorted((SOURCE / "docs").rglob("*.ipynb"))
    assert notebooks, "no notebook under docs/"
    found = []
    for nb_path in notebooks:
        nb = json.loads(nb_path.read_text())
        for i, cell in enumerate(nb["cells"]):
            for out in cell.get("outputs", []):
                texts = [out.get("text", "")] + [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
                for t in texts:
                    t = "".join(t) if isinstance(t, list) else t
                    found += [f"{nb_path.relative_to(SOURCE)} cell {i}: {p}" for p in _absolute_paths(t)]
    assert not found, "committed outputs name this machine's paths:\n" + "\n".join(found)


def test_kept_device_results_name_no_absolute_paths():
    # bench/results/*.json: the summaries of device runs (none yet where no GPU was lent); a path in them is the
    # device machine's, which no reader has.
    found = []
    for f in sorted((SOURCE / "bench" / "results").glob("*.json")):
        found += [f"{f.relative_to(SOURCE)}: {p}" for p in _absolute_paths(f.read_text())]
    assert not found, "kept results name a machine's paths:\n" + "\n".join(found)
