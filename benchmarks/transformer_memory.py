"""Memory and time of one training step of droplab's Vision Transformer, torch's dropout against droplab's.

One step (forward, cross-entropy on random labels, backward, an SGD step) of ``droplab.vit.ViT`` at
its default size (7x7 patches: 16 tokens, width 64, depth 4, 4 heads, MLP ratio 2) on a batch of 256
random 28x28 images, with dropout at the issue's "about 10 %": attention 0.1, projection 0.1, MLP 0.1,
DropPath 0.1 (the last block's; it rises from 0 in the first). Two copies with the same weights (the
state_dict copied): ``ViT(impl="torch")``, torch's dropout at each site (SDPA's ``dropout_p``,
``residual + F.dropout(x)``, ``nn.Dropout``, timm's ``drop_path`` with ``bernoulli_``), and
``ViT()``, droplab's (its SDPA, ``dropout_add``, ``droplab.nn.Dropout``, ``droplab.nn.DropPath``).
It prints, per side:

- bytes autograd saves for backward in the step's forward, each storage once, the parameters not
  counted (``benchmarks/swap_memory.py``'s ``saved_in_forward``: ``saved_tensors_hooks``), and
  the part that is dropout masks, by site kind: a mask is a storage a dropout op writes
  (``bernoulli_``, ``bernoulli``, ``native_dropout``'s mask) or that a dropout layer's own forward
  saves, attributed to the innermost of the ViT's dropout sites running when it is drawn;
- the peak RSS of the step: each side in a fresh process (this script with ``--child``), which
  builds both copies and the batch, then writes ``5`` to ``/proc/self/clear_refs`` (the high-water
  mark ``VmHWM`` reset to the resident set now; where that fails, ``ru_maxrss``, which cannot be
  reset, is read instead and said so) and takes 3 training steps; the step's peak is ``VmHWM``
  after them less ``VmRSS`` before them. The first steps are measured, not warm ones: the
  allocator keeps a step's freed memory resident, so a warm step's peak barely rises above the
  resident set it starts from. Median of the fresh processes' (3 per side, 1 with ``--quick``);
- the step's time: the median over interleaved rounds of each round's median step (the sides take
  steps in turn, each timed; ``swap_memory.step_times``), the ratio droplab / torch and the
  range of the rounds' own ratios; the load average at the start and the end.

Then the targets, met or not: droplab saves 0 mask bytes (torch's at each of the four site kinds are
counted), its step is no slower than torch's (ratio <= 1.0), and the activation memory it saves (the
bytes saved for backward, droplab's against torch's), in MB (10^6 bytes) and per cent.

    PYTHONPATH=src python benchmarks/transformer_memory.py [--rounds 7] [--threads N] [--batch 256] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from swap_memory import Saved, _cpu, saved_in_forward, step_times
from torch import nn

import droplab
from droplab.vit import ViT

RATES = dict(attention_dropout=0.1, projection_dropout=0.1, mlp_dropout=0.1, drop_path=0.1)
SITES = ("attention", "projection", "MLP", "DropPath")
SIDES = ("torch", "droplab")
RSS_STEPS = 3


def vit_pair(rates: dict[str, float] = RATES, **size: int) -> dict[str, ViT]:
    """Torch's and droplab's ViT with the same weights, in training mode; ``size``: ViT's shape arguments."""
    torch.manual_seed(0)
    ours = ViT(**size, **rates).train()
    theirs = ViT(**size, **rates, impl="torch").train()
    theirs.load_state_dict(ours.state_dict())
    return {"torch": theirs, "droplab": ours}


def step_loss(batch: int, image: int = 28, classes: int = 10) -> Callable[[nn.Module], torch.Tensor]:
    """The step's loss for a model: cross-entropy of a fixed batch of random images and labels."""
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(batch, image * image, generator=generator)
    y = torch.randint(0, classes, (batch,), generator=generator)
    return lambda m: F.cross_entropy(m(x), y)


def site_of(model: ViT) -> Callable[[list[nn.Module]], str]:
    """Names the site kind of a mask from the stack of modules running: the innermost of the ViT's
    dropout sites (``SITES``); any other place by its module's type."""
    kinds = {}
    for block in model.blocks:
        kinds |= {id(block.attn): "attention", id(block.proj_drop): "projection", id(block.mlp[2]): "MLP",
                  id(block.mlp_drop): "MLP", id(block.drop_path): "DropPath"}  # fmt: skip

    def site(stack: list[nn.Module]) -> str:
        for module in reversed(stack):
            if id(module) in kinds:
                return kinds[id(module)]
        return f"elsewhere ({type(stack[-1]).__name__ if stack else 'no module'})"

    return site


def measure(models: dict[str, ViT], loss: Callable[[nn.Module], torch.Tensor]) -> dict[str, Saved]:
    """Per side, the bytes saved for backward in one training step's forward and the masks among them by
    site kind (the step's backward runs too; its gradients are cleared)."""
    return {name: saved_in_forward(model, loss, site_of(model)) for name, model in models.items()}


def _status(key: str) -> int | None:
    """A field of /proc/self/status in bytes (``VmRSS``, ``VmHWM``), or None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(side: str, batch: int, size: dict[str, int]) -> dict[str, object]:
    """In a fresh process: the resident set before ``RSS_STEPS`` training steps of ``side`` and its peak
    over them (bytes), and how the peak was read."""
    model = vit_pair(**size)[side]
    loss = step_loss(batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    gc.collect()
    before = _status("VmRSS") or 0
    method = "VmHWM after a reset" if _reset_peak() and _status("VmHWM") else "ru_maxrss"
    for _ in range(RSS_STEPS):
        loss(model).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    peak = _status("VmHWM") if method != "ru_maxrss" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"before": before, "peak": peak, "method": method}


def peak_rss(side: str, batch: int, size: dict[str, int], threads: int) -> dict[str, object]:
    """``child`` run in a fresh Python process, with ``threads`` threads."""
    args = [sys.executable, __file__, "--child", side, "--batch", str(batch), "--threads", str(threads),
            "--width", str(size["width"]), "--depth", str(size["depth"])]  # fmt: skip
    src = str(Path(droplab.__file__).resolve().parents[1])  # this droplab, however it was found
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(saved: dict[str, Saved], rss: dict[str, list[dict]], per_round: dict[str, list[float]]) -> list:
    """Prints the table; returns the targets (text, value, met)."""
    times = {name: statistics.median(t) for name, t in per_round.items()}
    step_rss = {name: statistics.median(r["peak"] - r["before"] for r in runs) for name, runs in rss.items()}
    print(f"\n  {'':8s} {'saved MiB':>10s} {'masks MiB':>10s} {'mask share':>10s} {'peak RSS MiB':>13s} "
          f"{'step ms':>8s}")  # fmt: skip
    for name in SIDES:
        s = saved[name]
        print(f"  {name:8s} {s.total / 2**20:10.2f} {s.mask_bytes / 2**20:10.2f} {s.mask_bytes / s.total:10.1%} "
              f"{step_rss[name] / 2**20:13.1f} {times[name] * 1e3:8.1f}")  # fmt: skip
        for where in sorted(s.masks, key=lambda w: SITES.index(w) if w in SITES else len(SITES)):
            print(f"    masks at {where}: {s.masks[where] / 2**20:.3f} MiB")
    ratio = times["droplab"] / times["torch"]
    rounds = [a / b for a, b in zip(per_round["droplab"], per_round["torch"])]
    print(f"  step time droplab / torch: {ratio:.3f} (the rounds' own ratios: {min(rounds):.3f} to {max(rounds):.3f})")
    before = ", ".join(f"{name} {statistics.median(r['before'] for r in rss[name]) / 2**20:.0f}" for name in SIDES)
    print(f"  peak RSS: the {RSS_STEPS} first steps' peak less the resident set before them ({before} MiB), "
          f"{rss['torch'][0]['method']}, median of {len(rss['torch'])} fresh process(es) per side")  # fmt: skip
    ours, theirs = saved["droplab"], saved["torch"]
    kinds = [k for k in SITES if theirs.masks.get(k, 0) > 0]
    less = theirs.total - ours.total
    rss_less = step_rss["torch"] - step_rss["droplab"]
    return [(f"droplab's mask bytes = 0 (torch's: {theirs.mask_bytes / 2**20:.2f} MiB, at {len(kinds)} of the 4 site "
             "kinds)",
             f"{ours.mask_bytes}", ours.mask_bytes == 0),
            ("droplab's step time / torch's <= 1.0", f"{ratio:.3f}", ratio <= 1.0),
            ("activation memory (saved for backward) droplab saves", f"{less / 1e6:.2f} MB ({less / 2**20:.2f} MiB), "
             f"{less / theirs.total:.1%} of torch's {theirs.total / 1e6:.2f} MB", less > 0),
            ("the step's peak RSS droplab saves", f"{rss_less / 1e6:.1f} MB, {rss_less / step_rss['torch']:.1%} of "
             f"torch's {step_rss['torch'] / 1e6:.1f} MB", rss_less > 0)]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="3 shorter rounds, one fresh process per side")
    ap.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = dict(width=args.width, depth=args.depth)
    if args.child:
        print(json.dumps(child(args.child, args.batch, size)))
        return
    rounds, target, fresh = (3, 0.3, 1) if args.quick else (args.rounds, 1.0, 3)
    load = os.getloadavg()[0]
    print(f"{_cpu()}, {torch.get_num_threads()} threads, torch {torch.__version__}; one training step (forward, "
          f"backward, SGD) of ViT(width={args.width}, depth={args.depth}), batch {args.batch}; dropout: attention "
          f"{RATES['attention_dropout']}, projection {RATES['projection_dropout']}, MLP {RATES['mlp_dropout']}, "
          f"DropPath {RATES['drop_path']} (the last block's); median of {rounds} interleaved rounds")  # fmt: skip
    models, loss = vit_pair(**size), step_loss(args.batch)
    saved = measure(models, loss)
    rss = {name: [] for name in SIDES}
    for _ in range(fresh):
        for name in SIDES:
            rss[name].append(peak_rss(name, args.batch, size, torch.get_num_threads()))
    targets = report(saved, rss, step_times(models, loss, rounds, target))
    print(f"\nload average (1 min) at the start and the end: {load:.2f}, {os.getloadavg()[0]:.2f}, on "
          f"{os.cpu_count()} cores (the end's includes this run)")  # fmt: skip
    print("\ntargets:")
    for text, value, ok in targets:
        print(f"  {text}: {value} -> {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
