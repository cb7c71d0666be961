"""The CPU dropout kernel's start-up: the first ``dropout`` call in a fresh process, C against numba.

For each backend (``DROPLAB_CPU_KERNEL=native`` and ``=numba``) and each cache state, a fresh
Python process imports torch, makes a 2**20-element float32 tensor, then times

- the import of ``droplab.functional``;
- its first ``dropout`` call (from just before the call to its return: choosing the backend,
  loading or compiling the kernel, starting the threads, the work);
- the second call, for scale.

Warm cache: a cache directory (``DROPLAB_CACHE_DIR`` and ``NUMBA_CACHE_DIR``) filled by one
untimed process first. Cold cache: new, empty directories for every process (the C kernel is
compiled, numba's kernels are compiled). Runs are interleaved (one of each kind per round) and
each figure is the median over the rounds. The target: the warm first call at most 50 ms.

    python benchmarks/kernel_start.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import torch

PROCESS = """
import json, time, torch
x = torch.ones(1 << 20)
t0 = time.perf_counter()
from droplab.functional import dropout
t1 = time.perf_counter()
dropout(x, 0.5)
t2 = time.perf_counter()
dropout(x, 0.5)
t3 = time.perf_counter()
from droplab.kernels import cpu
print(json.dumps(dict(backend=cpu.backend(), imp=t1 - t0, first=t2 - t1, second=t3 - t2)))
"""
BACKENDS = ("native", "numba")
STATES = ("warm", "cold")
TARGET_MS = 50.0


def run_once(backend: str, cache: str) -> dict:
    env = {**os.environ, "DROPLAB_CPU_KERNEL": backend, "DROPLAB_CACHE_DIR": cache, "NUMBA_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", PROCESS], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["backend"] != backend:
        raise RuntimeError(f"asked for the {backend} backend, got {result['backend']}")
    return result


def measure(rounds: int) -> dict[tuple[str, str], dict[str, float]]:
    """Median seconds of each phase per (backend, cache state), over interleaved rounds."""
    samples = {(b, s): [] for b in BACKENDS for s in STATES}
    with tempfile.TemporaryDirectory() as warm:
        for backend in BACKENDS:
            run_once(backend, warm)  # fills the warm cache
        for _ in range(rounds):
            for backend in BACKENDS:
                samples[backend, "warm"].append(run_once(backend, warm))
                with tempfile.TemporaryDirectory() as cold:
                    samples[backend, "cold"].append(run_once(backend, cold))
    return {key: {phase: statistics.median(r[phase] for r in runs) for phase in ("imp", "first", "second")}
            for key, runs in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"CPU dropout kernel start-up: fresh processes, 2**20 float32 elements, p = 0.5, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, median of {args.rounds} interleaved rounds")
    med = measure(args.rounds)
    header = f"{'backend':>8s} {'cache':>6s} {'import droplab.functional':>26s} {'first call':>11s} {'second':>8s}"
    print(f"\n{header}  (ms)")
    for (backend, state), m in med.items():
        print(f"{backend:>8s} {state:>6s} {m['imp'] * 1e3:26.1f} {m['first'] * 1e3:11.1f} {m['second'] * 1e3:8.2f}")
    print()
    for state in STATES:
        ratio = med["numba", state]["first"] / med["native", state]["first"]
        print(f"first call, {state} cache: numba / native = {ratio:.1f}x")
    warm_native = med["native", "warm"]["first"] * 1e3
    print(f"target: first call with a warm cache <= {TARGET_MS:.0f} ms: {warm_native:.1f} ms -> "
          f"{'met' if warm_native <= TARGET_MS else 'NOT met'}")
    for backend in BACKENDS:
        for state in STATES:
            print(f"first call, {state} cache, {backend}: {med[backend, state]['first'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
