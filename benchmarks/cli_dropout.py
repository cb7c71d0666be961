"""What dropout costs as users run it: ``droplab train`` from the command line, p = 0.5 against p = 0.

Each side is a fresh ``droplab train`` process (10 epochs of the lecture's run by default), so
the figure includes everything a user pays once per run: loading the dropout kernel, its
first calls, the threads' start. The two sides alternate (p=0.5, p=0, p=0.5, ...) so the
machine's noise falls on both alike, and the figure is the median of the per-pair ratios of
the ``seconds`` each run records in its ``summary.json`` (training and evaluation; not the
interpreter's start or the data's loading, which do not depend on p). The whole process's
wall time is printed beside it. The runs are written to a temporary directory, then deleted.

    python benchmarks/cli_dropout.py [--pairs 5] [--epochs 10] [--threads N] [--precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from droplab.train.metrics import cpu_name

SIDES = {"p=0.5": ["--dropout", "0.5", "0.5"], "p=0": ["--dropout", "0", "0"]}


def run(out: Path, epochs: int, extra: list[str]) -> tuple[float, float]:
    """One ``droplab train`` process: (summary seconds, wall seconds of the whole process)."""
    cmd = [sys.executable, "-m", "droplab", "train", "--epochs", str(epochs), "--out", str(out), *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return json.loads((out / "summary.json").read_text())["seconds"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()
    common = ["--precision", args.precision] + (["--threads", str(args.threads)] if args.threads else [])
    seconds: dict[str, list[float]] = {k: [] for k in SIDES}
    walls: dict[str, list[float]] = {k: [] for k in SIDES}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            for name, flags in SIDES.items():
                s, w = run(Path(tmp) / f"{name}-{i}", args.epochs, flags + common)
                seconds[name].append(s)
                walls[name].append(w)
    print(f"droplab train, {args.epochs} epochs, {args.precision}, threads {args.threads or 'default'}, "
          f"{args.pairs} alternated pairs; {cpu_name()}, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'':8s} {'summary s (median)':>19s} {'process s (median)':>19s}")
    for name in SIDES:
        print(f"{name:8s} {statistics.median(seconds[name]):19.2f} {statistics.median(walls[name]):19.2f}")
    ratio = statistics.median(a / b for a, b in zip(seconds["p=0.5"], seconds["p=0"]))
    wall_ratio = statistics.median(a / b for a, b in zip(walls["p=0.5"], walls["p=0"]))
    print(f"whole process, p=0.5 / p=0 (median of pairs): {wall_ratio:.3f}")
    print(f"summary seconds, p=0.5 / p=0 (median of pairs): {ratio:.3f}")


if __name__ == "__main__":
    main()
