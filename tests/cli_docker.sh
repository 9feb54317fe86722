#!/usr/bin/env bash
# docker/Dockerfile checked without a Docker engine, so the image and the README cannot drift apart:
#   - the build stage's steps (the RUN lines under `# ebm-build-step`) are the README's commands, and they run
#     here: the build context .dockerignore leaves configures with the same preset, and the install step runs
#     against the build this test suite made (a second full build would cost minutes);
#   - the installed tree works laid out as in the image (/ebm with configs/, data/ -> /data, runs/ -> /runs);
#   - the runtime stage installs every library the installed tools load that its base image lacks;
#   - non-root USER, ENTRYPOINT ["ebm_train"], /data and /runs volumes, COPY sources present.
#   bash tests/cli_docker.sh BUILD_DIR SOURCE_DIR
set -u
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
note() { echo "note: $*"; }

# --- 1. static checks of the Dockerfile and the build context (python: parsing), facts for the steps below ---
python3 - "$src" "$tmp" > "$tmp/static.out" 2>&1 <<'PY'
import json, os, re, shlex, subprocess, sys
src, tmp = sys.argv[1:3]
results = []
def check(name, cond, why=""):
    results.append((name, bool(cond), why))
    return bool(cond)

# Logical instructions: continuation lines joined, comments kept apart (Docker drops them inside a RUN).
lines = open(os.path.join(src, "docker/Dockerfile")).read().splitlines()
instr, buf, marked, pending_mark = [], "", False, False
for raw in lines:
    s = raw.strip()
    if not buf and s.startswith("#"):
        if s == "# ebm-build-step":
            pending_mark = True
        continue
    if not buf and not s:
        pending_mark = False
        continue
    if s.startswith("#"):
        continue
    if not buf:
        marked, pending_mark = pending_mark, False
    if s.endswith("\\"):
        buf += s[:-1].strip() + " "
        continue
    buf += s
    op, _, args = buf.partition(" ")
    instr.append({"op": op.upper(), "args": args.strip(), "marked": marked})
    buf, marked = "", False
check("every # ebm-build-step line is followed by its RUN", not pending_mark)

args_before = {}
stages = []
for i in instr:
    if i["op"] == "FROM":
        stages.append({"from": i["args"], "body": []})
    elif not stages:
        if i["op"] == "ARG":
            k, _, v = i["args"].partition("=")
            args_before[k] = v
    else:
        stages[-1]["body"].append(i)
check("two stages (build, runtime)", len(stages) == 2, f"found {len(stages)}")
if len(stages) != 2:
    for name, good, why in results: print(("ok " if good else "FAIL ") + name + (": " + why if why and not good else ""))
    sys.exit(0)
build, run = stages
def image(stage):
    return stage["from"].split()[0]
def expand(s, env):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), m.group(0)), s)
b_img, r_img = image(build), image(run)
check("build stage: nvidia/cuda *-cudnn-devel-* image", re.fullmatch(r"nvidia/cuda:\S*-cudnn-devel-ubuntu\S+", b_img), b_img)
check("runtime stage: the matching *-cudnn-runtime-* image", r_img == b_img.replace("-cudnn-devel-", "-cudnn-runtime-"),
      f"{b_img} vs {r_img}")
used = set(re.findall(r"\$\{(\w+)\}", b_img + r_img))
check("the image tags' ARGs are declared before FROM with defaults",
      all(args_before.get(a) for a in used), f"used {sorted(used)}, declared {args_before}")
check("build stage is named build", build["from"].split()[-1] == "build" and " AS " in build["from"].upper(), build["from"])

# The build steps: exactly the README's two commands.
steps = [i["args"] for i in build["body"] if i["marked"]]
check("marked steps are RUN lines", all(i["op"] == "RUN" for i in build["body"] if i["marked"]))
want = ["scripts/setup.sh --no-data", "cmake --install build --prefix /opt/ebm"]
check("build steps are `scripts/setup.sh --no-data` then `cmake --install build --prefix /opt/ebm`", steps == want,
      f"found {steps}")
unmarked = [i["args"] for i in build["body"] if i["op"] == "RUN" and not i["marked"]]
check("no other RUN builds in the build stage", not unmarked, f"unmarked RUN lines: {unmarked}")
setup = open(os.path.join(src, "scripts/setup.sh")).read()
check("scripts/setup.sh takes --no-data and builds the release preset by default",
      re.search(r"^\s*--no-data\)", setup, re.M) and re.search(r"\bpreset=release\b", setup))
presets = json.load(open(os.path.join(src, "CMakePresets.json")))
rel = [p for p in presets["configurePresets"] if p["name"] == "release"]
check("the release preset builds into build/ (the install step's `build`)",
      rel and rel[0].get("binaryDir") == "${sourceDir}/build")
readme = os.path.join(src, "README.md")
if os.path.exists(readme):
    check("README.md gives scripts/setup.sh", "scripts/setup.sh" in open(readme).read())
else:
    print("note: no README.md yet; its setup command is not compared")
dreadme = open(os.path.join(src, "docker/README.md")).read()
for s in want + ["docker build", "--gpus all", "/data", "/runs", "--container-image", "apptainer exec --nv"]:
    check(f"docker/README.md shows `{s}`", s in dreadme)

# Variables the build stage sets for setup.sh must be read by setup.sh or CMake, or they change nothing.
build_env = {}
for i in build["body"]:
    if i["op"] == "ENV":
        for tok in shlex.split(i["args"]):
            k, _, v = tok.partition("=")
            build_env[k] = v
readers = [os.path.join(src, "scripts/setup.sh"), os.path.join(src, "CMakeLists.txt")] + \
          [os.path.join(src, "cmake", f) for f in os.listdir(os.path.join(src, "cmake"))]
read_text = "".join(open(p).read() for p in readers if os.path.isfile(p))
for k in build_env:
    check(f"build ENV {k} is read by scripts/setup.sh or CMake", k in read_text,
          "setup.sh does not pass it on: the image is built without it")
stage_args = {}
for i in build["body"]:
    if i["op"] == "ARG":
        k, _, v = i["args"].partition("=")
        stage_args[k] = v
cmake_args = expand(build_env.get("EBM_CMAKE_ARGS", ""), stage_args)

# Runtime stage: what it copies, who runs, where.
body = run["body"]
copies = [i["args"].split() for i in body if i["op"] == "COPY"]
check("runtime copies /opt/ebm (the install prefix) from the build stage",
      ["--from=build", "/opt/ebm", "/opt/ebm"] in copies, f"{copies}")
users = [i["args"] for i in body if i["op"] == "USER"]
check("runtime runs as a non-root USER", users and users[-1].split(":")[0] not in ("root", "0"), f"{users}")
after_user = [i["op"] for i in body[[n for n, i in enumerate(body) if i["op"] == "USER"][-1]:] if i["op"] == "RUN"] if users else []
check("no RUN after USER (they would run without root)", not after_user)
ep = [i["args"] for i in body if i["op"] == "ENTRYPOINT"]
check('ENTRYPOINT ["ebm_train"]', ep and json.loads(ep[-1]) == ["ebm_train"], f"{ep}")
envs = " ".join(i["args"] for i in body if i["op"] == "ENV")
check("PATH holds /opt/ebm/bin", re.search(r"PATH=/opt/ebm/bin:", envs), envs)
vols = [v for i in body if i["op"] == "VOLUME" for v in json.loads(i["args"])]
check("volumes /data and /runs", "/data" in vols and "/runs" in vols, f"{vols}")
workdir = [i["args"] for i in body if i["op"] == "WORKDIR"]
runs = " && ".join(i["args"] for i in body if i["op"] == "RUN")
links = dict((dst, tgt) for tgt, dst in re.findall(r"ln -s (\S+) (\S+)", runs))
wd = workdir[-1] if workdir else "/"
want_links = {f"{wd}/configs": "/opt/ebm/share/ebm/configs", f"{wd}/data": "/data", f"{wd}/runs": "/runs"}
check(f"WORKDIR {wd} holds configs/, data/ -> /data, runs/ -> /runs", all(links.get(k) == v for k, v in want_links.items()),
      f"links {links}")
pkgs = []
for i in body:
    if i["op"] == "RUN" and "apt-get install" in i["args"]:
        check("runtime apt-get: --no-install-recommends, lists removed",
              "--no-install-recommends" in i["args"] and "rm -rf /var/lib/apt/lists" in i["args"])
        part = i["args"].split("apt-get install", 1)[1].split("&&")[0]
        pkgs += [t for t in part.split() if not t.startswith("-")]
check("runtime installs libraries with apt-get", pkgs)

# The build context: the tree less .dockerignore (Docker's rules: `*` within a path part, `**` across, `!` keeps).
rules = []
for l in open(os.path.join(src, ".dockerignore")).read().splitlines():
    l = l.strip()
    if not l or l.startswith("#"):
        continue
    keep = l.startswith("!")
    pat = l.lstrip("!").strip("/")
    rx = "".join(".*" if p == "**" else "[^/]*" if p == "*" else "[^/]" if p == "?" else re.escape(p)
                 for p in re.split(r"(\*\*|\*|\?)", pat))
    rules.append((re.compile(rx.replace(".*/", "(.*/)?")), keep))
def ignored(rel):
    parts = rel.split("/")
    for n in range(1, len(parts) + 1):  # a folder left out takes all below it
        prefix, out = "/".join(parts[:n]), False
        for rx, keep in rules:
            if rx.fullmatch(prefix):
                out = not keep
        if out:
            return True
    return False
context, size = [], 0
for root, dirs, files in os.walk(src):
    rel_root = os.path.relpath(root, src)
    rel_root = "" if rel_root == "." else rel_root + "/"
    dirs[:] = [d for d in dirs if not ignored(rel_root + d)]
    for f in files:
        if not ignored(rel_root + f):
            context.append(rel_root + f)
            size += os.lstat(os.path.join(root, f)).st_size
open(os.path.join(tmp, "context.txt"), "w").write("\n".join(context) + "\n")
check("context under 20 MB (no build output or data in it)", size < 20e6, f"{size / 1e6:.1f} MB in {len(context)} files")
for need in ("CMakeLists.txt", "CMakePresets.json", "scripts/setup.sh", "configs/mnist.json", "docker/Dockerfile"):
    check(f"context holds {need}", need in context)
for c in [i["args"].split() for i in build["body"] + body if i["op"] == "COPY"]:
    if not any(a.startswith("--from") for a in c):
        for s in c[:-1]:
            if not s.startswith("--"):
                s = s.strip("/") or "."
                check(f"COPY source {s} is in the context",
                      s == "." or s in context or any(p.startswith(s + "/") for p in context))
try:
    ign = subprocess.run(["git", "-C", src, "ls-files", "--others", "--ignored", "--exclude-standard", "--directory"],
                         capture_output=True, text=True, check=True).stdout.split()
    leaked = [p for p in ign if not ignored(p.rstrip("/"))]
    check("every git-ignored path here is left out of the context", not leaked, f"not in .dockerignore: {leaked}")
except (OSError, subprocess.CalledProcessError):
    print("note: not a git checkout; .gitignore not compared with .dockerignore")

print(f"note: context {len(context)} files, {size / 1e6:.1f} MB; images {expand(b_img, args_before)}, "
      f"{expand(r_img, args_before)}")
facts = {"cmake_args": cmake_args, "install_step": steps[-1] if steps else "", "runtime_pkgs": pkgs,
         "workdir": wd, "links": links}
json.dump(facts, open(os.path.join(tmp, "facts.json"), "w"))
for name, good, why in results:
    print(("ok " if good else "FAIL ") + name + (": " + why if why and not good else ""))
PY
[ -s "$tmp/static.out" ] || bad "Dockerfile parser printed nothing"
while IFS= read -r line; do
  case "$line" in
    "ok "*) ok ;;
    "FAIL "*) bad "${line#FAIL }" ;;
    *) echo "$line" ;;
  esac
done < "$tmp/static.out"
[ -f "$tmp/facts.json" ] || { echo "cli_docker: $pass passed, $((fail + 1)) failed (no facts from the Dockerfile)"; exit 1; }
fact() { python3 -c "import json,sys; v=json.load(open('$tmp/facts.json'))['$1']; print(v if isinstance(v,str) else ' '.join(v))"; }

# --- 2. the build context configures with the preset setup.sh uses, given the Dockerfile's EBM_CMAKE_ARGS ---
mkdir -p "$tmp/ctx"
(cd "$src" && tar -cf - -T "$tmp/context.txt") | (cd "$tmp/ctx" && tar -xf -)
cmake_args=$(fact cmake_args)
# shellcheck disable=SC2086  # EBM_CMAKE_ARGS is a list of options, split as setup.sh splits it
if (cd "$tmp/ctx" && cmake --preset release $cmake_args > "$tmp/configure.log" 2>&1); then
  ok
  cache=$tmp/ctx/build/CMakeCache.txt
  for a in $cmake_args; do
    kv=${a#-D}
    grep -q "^${kv%%=*}:[A-Z]*=${kv#*=}\$" "$cache" && ok || bad "context configure: $a did not reach the cache"
  done
else
  bad "cmake --preset release in the build context: $(tail -5 "$tmp/configure.log")"
fi

# --- 3. the install step, against this suite's build (the same preset unless ctest runs another) ---
if [ "$build" = "$src/build" ]; then
  note "build/ is what the build stage's first step, scripts/setup.sh --no-data, makes (scripts/test.sh runs it)"
else
  note "the suite's build is $build, not the release preset's build/; installing from it"
fi
grep -q '^CMAKE_BUILD_TYPE:STRING=Release$' "$build/CMakeCache.txt" || note "$build is not a Release build (the image's is)"
install_cmd=$(fact install_step)  # the Dockerfile's own line (section 1 checked it is the README's)
here_cmd=${install_cmd/ build / \"$build\" }
here_cmd=${here_cmd/\/opt\/ebm/\"$tmp/opt/ebm\"}
echo "install step: $install_cmd  ->  $here_cmd"
if (cd "$src" && eval "$here_cmd") > "$tmp/install.log" 2>&1; then ok; else bad "install: $(tail -5 "$tmp/install.log")"; fi
prefix=$tmp/opt/ebm
for t in ebm_train ebm_sample ebm_score ebm_eval ebm_bench; do
  [ -x "$prefix/bin/$t" ] && ok || bad "installed tree lacks bin/$t (install() rules in CMakeLists.txt?)"
done
[ -f "$prefix/share/ebm/configs/mnist.json" ] && ok || bad "installed tree lacks share/ebm/configs/mnist.json"
if "$prefix/bin/ebm_train" --help > "$tmp/help" 2>&1 && grep -q "usage: ebm_train" "$tmp/help"; then ok
else bad "installed ebm_train --help: $(head -3 "$tmp/help")"; fi

# --- 4. every library the installed tools load: from the CUDA/cuDNN image, its base, or the runtime apt line ---
if command -v dpkg-query > /dev/null && command -v ldd > /dev/null && [ -x "$prefix/bin/ebm_train" ]; then
  python3 - "$prefix/bin" "$(fact runtime_pkgs)" > "$tmp/libs.out" 2>&1 <<'PY'
import os, re, subprocess, sys
bindir, pkgs = sys.argv[1], sys.argv[2].split()
norm = lambda p: re.sub(r"t64$", "", p.split(":")[0])  # Ubuntu 24.04's libpng16-16t64 is Debian 12's libpng16-16
def depends(p):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Depends},${Pre-Depends}", p], capture_output=True, text=True)
    if r.returncode:
        return []
    return [alt.split()[0].split(":")[0] for item in r.stdout.split(",") for alt in item.split("|") if alt.strip()]
have, todo = set(), [norm(p) for p in pkgs] + ["libc6", "libstdc++6", "libgcc-s1"]  # the last three: in every base image
while todo:
    p = todo.pop()
    for name in (p, p + "t64"):
        if name not in have:
            have.add(name)
            todo += depends(name)
cuda_image = re.compile(r"lib(cudart|curand|cudnn\w*|cublas\w*|nvrtc\w*|nvJitLink|cuda|nvToolsExt|nccl)\.so")
bad = 0
for tool in sorted(os.listdir(bindir)):
    out = subprocess.run(["ldd", os.path.join(bindir, tool)], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if not m or cuda_image.match(m.group(1)):
            continue
        lib, path = m.groups()
        if path == "not":
            print(f"FAIL {tool}: {lib} not found here"); bad += 1; continue
        owner = None
        for cand in {path, os.path.realpath(path), re.sub(r"^/lib/", "/usr/lib/", os.path.realpath(path)),
                     re.sub(r"^/usr/lib/", "/lib/", os.path.realpath(path))}:
            r = subprocess.run(["dpkg-query", "-S", cand], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(":")[0].split(",")[0].strip(); break
        if owner is None:
            print(f"FAIL {tool}: {lib} ({path}) belongs to no Debian package; the runtime image cannot get it"); bad += 1
        elif owner not in have and norm(owner) not in have:
            print(f"FAIL {tool}: {lib} comes from {owner}, which the runtime stage's apt-get line does not install"); bad += 1
print("ok" if bad == 0 else "")
PY
  if [ "$(tail -n 1 "$tmp/libs.out")" = ok ]; then ok; else bad "runtime libraries: $(grep FAIL "$tmp/libs.out")"; fi
else
  note "no dpkg-query/ldd here: the runtime stage's libraries are not checked"
fi

# --- 5. a run laid out as in the image: WORKDIR with configs/, data/ -> /data, runs/ -> /runs ---
if [ -x "$prefix/bin/ebm_train" ]; then
  root=$tmp/root wd=$(fact workdir)
  mkdir -p "$root$wd" "$root/data/mnist" "$root/runs"
  python3 - "$tmp/facts.json" "$root" "$prefix" <<'PY'
import json, os, sys
facts, root, prefix = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
for link, target in facts["links"].items():  # the image's absolute paths, moved under root (and /opt/ebm to prefix)
    target = prefix + target[len("/opt/ebm"):] if target.startswith("/opt/ebm") else root + target
    os.symlink(target, root + link)
PY
  python3 - "$root/data/mnist" <<'PY'
import gzip, os, random, struct, sys
d = sys.argv[1]; random.seed(0)
for name, n in (("train-images-idx3-ubyte.gz", 32), ("t10k-images-idx3-ubyte.gz", 8)):
    with gzip.open(os.path.join(d, name), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(random.randrange(256) for _ in range(n * 784)))
PY
  # As `docker run ... ebm-engine configs/mnist.json --set ...`: the entrypoint, the config by its relative path.
  tiny=(--set data.batch_size=16 --set model.channels=[4,8] --set sampler.steps=2 --set buffer.capacity=64
        --set buffer.initial=16 --set generate.n=4 --set generate.steps=2 --set backend=cpu --set train.max_steps=2)
  if (cd "$root$wd" && PATH="$prefix/bin:$PATH" ebm_train configs/mnist.json "${tiny[@]}") > "$tmp/run.log" 2>&1 \
     && [ -f "$root/runs/mnist/last/model.safetensors" ]; then ok
  else bad "run in the image's layout: $(tail -3 "$tmp/run.log")"; fi
fi

if command -v docker > /dev/null && docker info > /dev/null 2>&1; then
  note "a Docker engine is here: build the image itself with: docker build -f docker/Dockerfile -t ebm-engine ."
else
  note "no Docker engine here: the image itself is not built (its steps ran above)"
fi
echo "cli_docker: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
