"""The lecture's run in bf16 against fp32: time and validation accuracy over seeds, in one run.

Each seed trains the lecture's run (784-256-256-10, dropout 0.5, SGD lr 0.1, batch 256) in fp32
and in bf16 (``TrainConfig(precision="bf16")``: forward passes under bf16 autocast, weights in
fp32), one after the other, so the machine's noise falls on both alike. It prints each run's
training seconds and validation accuracy, the ratio of the median times, and the mean paired
difference in validation accuracy (bf16 - fp32, percentage points) with its range over seeds.
On a CPU without AMX or AVX512-BF16 the bf16 runs fall back to fp32 (the note says so).

    python benchmarks/precision.py [--epochs 10] [--seeds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from droplab.data import load_fashion_mnist
from droplab.train import TrainConfig, fit
from droplab.train.precision import bf16_native, resolve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    data = load_fashion_mnist()
    print(f"lecture's run, {args.epochs} epochs, threads {args.threads or torch.get_num_threads()}, "
          f"torch {torch.__version__}; native bf16: {bf16_native() or 'none'}; {resolve('bf16')[1] or ''}")
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    accs: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for seed in range(args.seeds):
        for precision in ("fp32", "bf16"):
            s = fit(TrainConfig(epochs=args.epochs, seed=seed, threads=args.threads, precision=precision), data).summary
            seconds[precision].append(s["seconds"])
            accs[precision].append(s["val_acc"])
            print(f"seed {seed} {precision}: {s['seconds']:6.2f} s, val acc {100 * s['val_acc']:.2f}%")
    diffs = [100 * (b - a) for a, b in zip(accs["fp32"], accs["bf16"])]
    print(f"val acc bf16 - fp32: {statistics.mean(diffs):+.2f} pp (range {min(diffs):+.2f} to {max(diffs):+.2f}, "
          f"{args.seeds} seeds)")
    print(f"bf16 / fp32 training time: {statistics.median(seconds['bf16']) / statistics.median(seconds['fp32']):.2f}")


if __name__ == "__main__":
    main()
