"""How to run a study's runs on this machine: worker processes with one torch thread each,
or one process with all of torch's threads, measured in one run.

Trains the same runs (the lecture's MLP, dropout 0.5, ``--epochs`` epochs, seeds 0..N-1)
through :func:`droplab.studies.engine.run_study` with ``--jobs`` workers and with one
process, in turn, ``--repeats`` times, and prints the wall times and their ratio. The
default of ``droplab study --jobs`` follows from it.

    python benchmarks/study_jobs.py [--runs 4] [--epochs 2] [--jobs 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from droplab.data import find_data_dir
from droplab.studies import Analysis, Study, Variant, run_study


def _variants(quick: bool) -> list[Variant]:
    return [Variant("dropout 0.5", {"dropout": (0.5, 0.5)})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=4, help="runs (seeds) per measurement")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    study = Study("jobs-benchmark", "", "", _variants, lambda r: Analysis([], [], {}), epochs=args.epochs,
                  base={"model": "mlp", "eval_train_size": 10_000})  # fmt: skip
    data_dir = find_data_dir()
    times: dict[str, list[float]] = {"pool": [], "inline": []}
    for _ in range(args.repeats):
        for side, jobs in (("pool", args.jobs), ("inline", 1)):
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                run_study(study, data_dir, out, seeds=args.runs, jobs=jobs, log=lambda line: None)
                times[side].append(time.perf_counter() - start)
    pool, inline = (statistics.median(times[k]) for k in ("pool", "inline"))
    print(f"{args.runs} runs of {args.epochs} epochs (784-256-256-10, dropout 0.5), {os.cpu_count()} cores, "
          f"torch {torch.__version__}, median of {args.repeats}")  # fmt: skip
    print(f"  {args.jobs} worker processes x 1 torch thread: {pool:7.1f} s  {[round(t, 1) for t in times['pool']]}")
    print(f"  1 process x {torch.get_num_threads()} torch threads:      {inline:7.1f} s  "
          f"{[round(t, 1) for t in times['inline']]}")  # fmt: skip
    print(f"  ratio workers / one process: {pool / inline:.2f}")


if __name__ == "__main__":
    main()
