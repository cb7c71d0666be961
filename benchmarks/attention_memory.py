"""Attention dropout: what autograd keeps, and the time of a training step, torch's against droplab's.

For B=8 batches of H=8 heads of E=64, L = S = 128 and 512, float32, dropout_p = 0.1, on CPU:

- bytes autograd saves for backward (``saved_tensors_hooks``) in one forward of
  ``torch.nn.functional.scaled_dot_product_attention`` (at ``dropout_p > 0`` torch runs its
  "math" path: the saved tensors of the attention matrix's size are P, the dropout mask and
  dropout(P); the mask is told apart by its values, all 0 or 1/(1-p)) and of
  ``droplab.functional.scaled_dot_product_attention``, which saves the row log-sum-exp and
  recomputes P in backward ("droplab"), and the same with P kept ("droplab keep P",
  ``droplab.attention.KEEP_PROBS``);
- milliseconds per forward+backward step of each, and of torch's function at ``dropout_p = 0``
  (its fused CPU kernel, no dropout: what attention costs without it), and the ratios to torch's.

Every time is a median over interleaved rounds (each side measured in every round), so machine
noise hits all sides alike. ``--quick`` runs fewer, shorter rounds.

    PYTHONPATH=src python benchmarks/attention_memory.py [--rounds 5] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as TF

from droplab import attention
from droplab.functional import scaled_dot_product_attention

B, H, E, P = 8, 8, 64, 0.1
LENGTHS = [128, 512]


def _droplab(keep_probs: bool):
    def run(q, k, v):
        attention.KEEP_PROBS = keep_probs
        try:
            return scaled_dot_product_attention(q, k, v, dropout_p=P)
        finally:
            attention.KEEP_PROBS = False

    return run


SIDES = {
    "torch p=0.1": lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, dropout_p=P),
    "droplab": _droplab(False),
    "droplab keep P": _droplab(True),
    "torch p=0 (no dropout)": lambda q, k, v: TF.scaled_dot_product_attention(q, k, v),
}


def saved(fn, q, k, v) -> tuple[int, int]:
    """(bytes of the dropout mask, bytes of everything else) that autograd saves for backward."""
    mask = rest = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal mask, rest
        size = t.numel() * t.element_size()
        top = t.max() if t.is_floating_point() and t.numel() else None
        is_mask = t.dtype == torch.bool or (top is not None and abs(float(top) - 1 / (1 - P)) < 1e-3
                                            and bool(((t == 0) | (t == top)).all()))  # fmt: skip
        if is_mask:
            mask += size
        else:
            rest += size
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(q, k, v)
    return mask, rest


def step_time(fn, q, k, v, target_s: float) -> float:
    """Seconds per forward+backward step, over enough steps to last about ``target_s``."""
    grad = torch.randn(q.shape[:-1] + v.shape[-1:])

    def step():
        out = fn(q, k, v)
        out.backward(grad)
        q.grad = k.grad = v.grad = None

    step()  # warm (the first droplab call loads the C kernel)
    start = time.perf_counter()
    step()
    reps = max(1, int(target_s / max(time.perf_counter() - start, 1e-7)))
    start = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - start) / reps


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def _mib(n: int) -> str:
    return f"{n / 2**20:8.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="3 rounds of shorter timings")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds, target = (3, 0.3) if args.quick else (args.rounds, 1.0)
    print(f"attention B={B} H={H} E={E}, float32, dropout_p={P}; {_cpu()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; median of {rounds} interleaved rounds")  # fmt: skip
    for length in LENGTHS:
        q, k, v = (torch.randn(B, H, length, E, requires_grad=True) for _ in range(3))
        print(f"\nL = S = {length} (P: {_mib(B * H * length * length * 4).strip()} MiB)")
        print(f"  {'':24s} {'saved MiB':>9s} {'of it mask':>10s} {'vs torch':>8s}   {'ms/step':>8s} {'vs torch':>8s}")
        times = {name: [] for name in SIDES}
        for _ in range(rounds):
            for name, fn in SIDES.items():
                times[name].append(step_time(fn, q, k, v, target))
        base_bytes, base_time = sum(saved(SIDES["torch p=0.1"], q, k, v)), statistics.median(times["torch p=0.1"])
        for name, fn in SIDES.items():
            mask, rest = saved(fn, q, k, v)
            t = statistics.median(times[name])
            print(f"  {name:24s} {_mib(mask + rest):>9s} {_mib(mask):>10s} {(mask + rest) / base_bytes:7.2f}x   "
                  f"{t * 1e3:8.1f} {t / base_time:7.2f}x")  # fmt: skip
        ours = sum(saved(SIDES["droplab"], q, k, v))
        verdict = "pays" if ours < base_bytes and statistics.median(times["droplab"]) <= base_time else "mixed"
        print(f"  droplab against torch p=0.1: saved bytes {ours / base_bytes:.2f}x, time "
              f"{statistics.median(times['droplab']) / base_time:.2f}x -> {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
