#!/usr/bin/env python3
"""The engine's training step written the way a PyTorch user would, timed for comparison with ebm_bench.

The seed's network (convs ModuleList of 3x3/2 Conv2d + swish, dense Linear), the replay buffer on the
device, Langevin in DESIGN §1's order (x <- clip(x + noise N(0,1)); g <- clip(grad_x(-f(x)), +-0.03);
x <- clip(x - step g)) with the parameters held constant, the contrastive-divergence loss with its
regulariser, Keras-style Adam (eps 1e-7). Prints one JSON line with ms_per_train_step and
ms_per_langevin_step, like ebm_bench.

Like with like (what ebm_bench does): batch 128, 100 Langevin steps per training step, fp32 (no TF32
unless --tf32); after --warmup (at least 2), --iters training steps timed as one run by a steady clock from
a synchronised start to a synchronised end, per step (ebm_bench ends its run with one read-back the same
way); the Langevin step alone as the median over --iters pairs of (2k-step chain - k-step chain) / k, the two
chains of a pair back to back, k = min(steps, 20), each chain synchronised at both ends — the fixed cost per
chain cancels, as in ebm_bench.

  bench/torch_step.py [--device cuda|cpu] [--batch 128] [--steps 100] [--iters 10] [--warmup 2]
                      [--threads N] [--tf32] [--compile [--compile-mode reduce-overhead]
                      [--compile-timeout 75]]

--compile (torch.compile of the network, the noise and the update) is optional and capped: when torch
has no torch.compile, when compiling fails, or when compiling and the warm-up take longer than
--compile-timeout seconds, the script prints {"skipped": "<why>", ...} and exits 0, so a caller reports
it as skipped rather than failed. Runs on torch 1.13 (CPU, eager) as well as 2.x.
"""
import argparse
import json
import math
import os
import signal
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
except ImportError as e:  # one line, not a traceback: say which python lacks it
    sys.exit(f"torch_step.py: needs PyTorch, which {sys.executable} cannot import ({e}); run it with a python "
             "that has torch (Debian: python3-torch, /usr/bin/python3)")

MNIST_TRAIN = 60000  # an epoch is ceil(60000 / batch) steps, as ebm_bench's epoch_s_mnist


class EnergyNet(nn.Module):
    """f(x): 4 x (Conv 3x3 stride 2 pad 1, swish) 16-32-64-64 on [N,1,32,32], flatten (NCHW), Dense -> 1."""

    def __init__(self, channels=(16, 32, 64, 64), in_hw=32):
        super().__init__()
        convs, c, hw = [], 1, in_hw
        for cout in channels:
            convs.append(nn.Conv2d(c, cout, 3, stride=2, padding=1))
            c, hw = cout, (hw + 2 - 3) // 2 + 1
        self.convs = nn.ModuleList(convs)
        self.dense = nn.Linear(c * hw * hw, 1)

    def forward(self, x):
        for conv in self.convs:
            x = nn.functional.silu(conv(x))  # swish
        return self.dense(x.flatten(1)).squeeze(1)


def langevin_update(x, g, step_size: float, grad_clip: float):
    return (x - step_size * g.clamp(-grad_clip, grad_clip)).clamp(-1.0, 1.0)


def perturb(x, noise: float):
    return (x + noise * torch.randn_like(x)).clamp(-1.0, 1.0)


class Trainer:
    def __init__(self, args, device):
        self.args, self.device = args, device
        self.model = EnergyNet().to(device)
        self.params = list(self.model.parameters())
        self.opt = torch.optim.Adam(self.params, lr=1e-4, betas=(0.9, 0.999), eps=1e-7)
        self.f, self.update, self.perturb = self.model, langevin_update, perturb
        if args.compile:
            self.f = torch.compile(self.model, mode=args.compile_mode, dynamic=False)
            self.update = torch.compile(langevin_update, dynamic=False)
            self.perturb = torch.compile(perturb, dynamic=False)
        self.capacity, self.size, self.head = 8192, args.batch, 0
        self.buffer = torch.empty(self.capacity, 1, 32, 32, device=device).uniform_(-1, 1)
        self.train = torch.empty(args.batch * 8, 1, 32, 32, device=device).uniform_(-1, 1)

    def langevin(self, x, steps, step_size=10.0, noise=0.005, grad_clip=0.03):
        # The parameters are constants here (DESIGN §1): no weight gradients are computed, as in the engine.
        # Eager autograd would skip them anyway; a compiled graph would not, unless told.
        for p in self.params:
            p.requires_grad_(False)
        for _ in range(steps):
            x = self.perturb(x, noise).requires_grad_(True)
            g = torch.autograd.grad(-self.f(x).sum(), x)[0]  # per image: rows are independent
            x = self.update(x.detach(), g, step_size, grad_clip)
        for p in self.params:
            p.requires_grad_(True)
        return x.detach()

    def sample_buffer(self, n, reinit_prob=0.05):
        # Binomial(n, p) fresh rows as a mask (no host sync), the rest uniform with replacement from those held.
        fresh = torch.rand(n, device=self.device) < reinit_prob
        held = self.buffer[torch.randint(0, self.size, (n,), device=self.device)]
        return torch.where(fresh[:, None, None, None], torch.empty_like(held).uniform_(-1, 1), held)

    def push(self, x):
        n = x.shape[0]
        slots = (self.head + self.size + torch.arange(n, device=self.device)) % self.capacity
        self.buffer.index_copy_(0, slots, x)
        dropped = max(0, self.size + n - self.capacity)
        self.size, self.head = min(self.size + n, self.capacity), (self.head + dropped) % self.capacity

    def step(self, i, alpha=0.1):
        b = self.args.batch
        start = (i * b) % self.train.shape[0]
        real = perturb(self.train[start:start + b], 0.005)
        fake = self.langevin(self.sample_buffer(b), self.args.steps)
        self.push(fake)
        f = self.f(torch.cat([real, fake]))
        f_real, f_fake = f[:b], f[b:]
        loss = f_fake.mean() - f_real.mean() + alpha * ((f_real ** 2).mean() + (f_fake ** 2).mean())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss


def timed(fn, device):
    """Milliseconds for fn(): a steady clock from a synchronised start to a synchronised end, as ebm_bench."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - t0) * 1e3


class CompileTimeout(BaseException):
    """Raised by the alarm; a BaseException, so that no `except Exception` inside torch swallows it."""


def skipped(why, args, **extra):
    """The compiled variant could not be timed: say why on one JSON line, and exit 0 at once (compile
    workers may still be running; they must not keep the process, or the budget, alive)."""
    print(json.dumps({"skipped": why, "kind": "torch", "compile": True, "compile_mode": args.compile_mode,
                      "torch": torch.__version__, **extra}), flush=True)
    sys.stderr.flush()
    os._exit(0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=100, help="Langevin steps per training step")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 in convolutions and matmuls (default: fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network, the noise and the update")
    p.add_argument("--compile-mode", default="reduce-overhead",
                   help="torch.compile mode (reduce-overhead uses CUDA graphs)")
    p.add_argument("--compile-timeout", type=float, default=75.0,
                   help="seconds allowed for compiling and the warm-up; past it the variant is skipped")
    args = p.parse_args()
    for flag, value, least in (("--batch", args.batch, 1), ("--steps", args.steps, 1), ("--iters", args.iters, 1),
                               ("--warmup", args.warmup, 0), ("--threads", args.threads, 0),
                               ("--compile-timeout", args.compile_timeout, 1)):
        if value < least:
            p.error(f"{flag} must be >= {least}, got {value}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_step.py: --device cuda, but torch sees no CUDA device")
    if args.compile and not hasattr(torch, "compile"):
        skipped(f"torch {torch.__version__} has no torch.compile", args)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True  # what a PyTorch user who cares about speed sets
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cuda.matmul.allow_tf32 = args.tf32

    t = Trainer(args, device)
    k = min(args.steps, 20)  # as ebm_bench: a k-step chain on a batch, per step
    x = torch.empty(args.batch, 1, 32, 32, device=device)

    # Warm-up (for --compile: compiling, and CUDA graph recording), under its own clock when compiling.
    t_warm = time.perf_counter()
    if args.compile:
        def on_alarm(signum, frame):
            raise CompileTimeout()
        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(max(1, int(math.ceil(args.compile_timeout))))
    try:
        for i in range(max(args.warmup, 2)):
            timed(lambda: t.step(i), device)
            timed(lambda: t.langevin(x.uniform_(-1, 1), k), device)
            timed(lambda: t.langevin(x.uniform_(-1, 1), 2 * k), device)
        if args.compile:
            signal.alarm(0)
    except CompileTimeout:
        skipped(f"compiling and warm-up took over {args.compile_timeout:g} s", args)
    except Exception as e:  # a compiler error: the eager numbers stand on their own
        if not args.compile:
            raise
        signal.alarm(0)
        if time.perf_counter() - t_warm >= args.compile_timeout:  # the alarm, wrapped by torch
            skipped(f"compiling and warm-up took over {args.compile_timeout:g} s", args)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        skipped(f"torch.compile failed: {type(e).__name__}: {first}", args)
    warm_s = time.perf_counter() - t_warm

    first = max(args.warmup, 2)
    ms_step = timed(lambda: [t.step(first + i) for i in range(args.iters)], device) / args.iters
    diffs = []  # pairs of a k-step and a 2k-step chain back to back: one pair sees one machine speed
    for _ in range(args.iters):
        short = timed(lambda: t.langevin(x.uniform_(-1, 1), k), device)
        diffs.append(timed(lambda: t.langevin(x.uniform_(-1, 1), 2 * k), device) - short)
    d = statistics.median(diffs)
    ms_langevin = d / k if d > 0 else None  # timing noise above the signal: no figure

    impl = f"torch-compile({args.compile_mode})" if args.compile else "torch-eager"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    epoch_steps = math.ceil(MNIST_TRAIN / args.batch)
    print(json.dumps({"backend": f"{impl} {torch.__version__}: {name}", "kind": "torch", "torch": torch.__version__,
                      "compile": args.compile, "compile_mode": args.compile_mode if args.compile else None,
                      "tf32": args.tf32, "cudnn_benchmark": True, "batch": args.batch,
                      "langevin_steps": args.steps, "iters": args.iters, "warmup": max(args.warmup, 2),
                      "warmup_s": round(warm_s, 2),
                      "ms_per_train_step": ms_step,
                      "ms_per_langevin_step": ms_langevin,
                      "epoch_steps_mnist": epoch_steps,
                      "epoch_s_mnist": ms_step * epoch_steps / 1000.0}), flush=True)


if __name__ == "__main__":
    main()
