#!/usr/bin/env python3
"""The engine's training step written the way a PyTorch user would, timed for comparison with ebm_bench.

The seed's network (convs ModuleList of 3x3/2 Conv2d + swish, dense Linear), the replay buffer on the
device, Langevin with its clips (noise, grad clip 0.03, step, clip to [-1, 1]), the contrastive-divergence
loss with its regulariser, Keras-style Adam (eps 1e-7). Prints one JSON line with ms_per_train_step and
ms_per_langevin_step (medians after warm-up), like ebm_bench.

  bench/torch_step.py [--device cuda|cpu] [--batch 128] [--steps 100] [--iters 10] [--warmup 2]
                      [--threads N] [--compile [--compile-mode reduce-overhead]]

Runs on torch 1.13 (CPU, eager) as well as 2.x; --compile needs torch.compile (2.0+).
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn


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
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-7)
        self.f = self.model
        self.update = langevin_update
        if args.compile:
            self.f = torch.compile(self.model, mode=args.compile_mode, dynamic=False)
            self.update = torch.compile(langevin_update, dynamic=False)
        self.capacity, self.size, self.head = 8192, args.batch, 0
        self.buffer = torch.empty(self.capacity, 1, 32, 32, device=device).uniform_(-1, 1)
        self.train = torch.empty(args.batch * 8, 1, 32, 32, device=device).uniform_(-1, 1)

    def langevin(self, x, steps, step_size=10.0, noise=0.005, grad_clip=0.03):
        for _ in range(steps):
            x = perturb(x, noise).requires_grad_(True)
            g = torch.autograd.grad(-self.f(x).sum(), x)[0]  # per image: rows are independent
            x = self.update(x.detach(), g, step_size, grad_clip)
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
    """Milliseconds for fn(): CUDA events on the GPU, a steady clock on the CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=100, help="Langevin steps per training step")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network and the Langevin update")
    p.add_argument("--compile-mode", default="reduce-overhead",
                   help="torch.compile mode (reduce-overhead uses CUDA graphs)")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.compile and not hasattr(torch, "compile"):
        sys.exit(f"torch_step.py: torch {torch.__version__} has no torch.compile")
    device = torch.device(args.device)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False  # fp32 convolutions, as the engine's default
    torch.backends.cuda.matmul.allow_tf32 = False

    t = Trainer(args, device)
    step_ms = [timed(lambda: t.step(i), device) for i in range(args.warmup + args.iters)][args.warmup:]
    k = min(args.steps, 20)  # as ebm_bench: a k-step chain on a batch, per step
    x = torch.empty(args.batch, 1, 32, 32, device=device)
    lang_ms = [timed(lambda: t.langevin(x.uniform_(-1, 1), k), device) / k
               for _ in range(args.warmup + args.iters)][args.warmup:]
    impl = f"torch-compile({args.compile_mode})" if args.compile else "torch-eager"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(json.dumps({"backend": f"{impl} {torch.__version__}: {name}", "batch": args.batch,
                      "langevin_steps": args.steps, "iters": args.iters,
                      "ms_per_train_step": statistics.median(step_ms),
                      "ms_per_langevin_step": statistics.median(lang_ms),
                      "epoch_s_mnist": statistics.median(step_ms) * 469 / 1000.0}), flush=True)


if __name__ == "__main__":
    main()
