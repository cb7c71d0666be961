"""Dropout as an operation: droplab's fast kernel against PyTorch's, measured in one run.

For 256x256, 1024x1024 and 4096x4096 float32 tensors, p = 0.5, training mode:

- forward and forward+backward throughput (G elements/s) of ``torch.nn.functional.dropout``,
  ``droplab.functional.dropout_reference`` (the lecture's code), ``droplab.functional.dropout``
  (the fast kernel) and ``x.mul(2.0)`` (the memory-traffic baseline: one read, one write);
- the ratios: droplab / torch, and droplab's time / ``x.mul(2.0)``'s time; for the targets
  against ``x.mul(2.0)`` also a paired measurement, the two called alternately;
- bytes per element that autograd saves for backward (``saved_tensors_hooks``);
- fused residual dropout, forward: ``droplab.functional.dropout_add(x, r, p)`` against
  ``r + torch.nn.functional.dropout(x, p)``, and ``bias_dropout_add(x, b, r, p)`` against
  ``r + F.dropout(x + b, p)`` (targets: >= 10x at 256x256 and 4096x4096), with ``r + x`` (one
  pass over three tensors) as the memory-traffic baseline;
- the first call's latency with a cold and with a warm kernel cache (fresh processes), for the
  CPU kernel this process uses (``DROPLAB_CPU_KERNEL``: C by default, or numba);
  ``benchmarks/kernel_start.py`` compares the two backends' start-up.

Every figure is a median over interleaved rounds (each side measured in every round), so
machine noise hits all sides alike. ``--quick`` runs fewer rounds.

    python benchmarks/dropout_op.py [--rounds 5] [--threads N] [--quick]
    DROPLAB_CPU_KERNEL=numba python benchmarks/dropout_op.py   # the numba fallback
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from droplab.functional import bias_dropout_add, dropout, dropout_add, dropout_reference
from droplab.kernels import cpu
from droplab.memory import saved_bytes

SHAPES = [(256, 256), (1024, 1024), (4096, 4096)]
P = 0.5
SIDES = {
    "torch F.dropout": lambda x: F.dropout(x, P, training=True),
    "dropout_reference": lambda x: dropout_reference(x, P),
    "droplab dropout": lambda x: dropout(x, P),
    "x.mul(2.0)": lambda x: x.mul(2.0),
}


def time_once(fn, x, backward: bool, target_s: float) -> float:
    """Seconds per call, over enough calls to last about ``target_s``."""
    grad = torch.ones_like(x) if backward else None
    xx = x.detach().requires_grad_(backward)

    def call():
        y = fn(xx)
        if backward:
            y.backward(grad)
            xx.grad = None

    call()  # warm (compiles the kernel on first use)
    start = time.perf_counter()
    call()
    once = time.perf_counter() - start
    reps = max(1, int(target_s / max(once, 1e-7)))
    start = time.perf_counter()
    for _ in range(reps):
        call()
    return (time.perf_counter() - start) / reps


def paired_ratio(fn_a, fn_b, x, calls: int) -> tuple[float, float, float]:
    """Median seconds per call of ``fn_a`` and ``fn_b`` called alternately (a, b, a, b...),
    each call timed on its own, and the ratio of the medians.

    Alternating call by call puts both sides in the same state of the machine and of the
    memory allocator (both allocate and free an output of the same size).
    """
    for _ in range(3):
        fn_a(x), fn_b(x)
    ta, tb = [], []
    clock = time.perf_counter
    for _ in range(calls):
        t0 = clock()
        fn_a(x)
        t1 = clock()
        fn_b(x)
        t2 = clock()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    a, b = statistics.median(ta), statistics.median(tb)
    return a, b, a / b


RESIDUAL_SIDES = {
    "r + F.dropout(x)": lambda x, b, r: r + F.dropout(x, P, training=True),
    "dropout_add": lambda x, b, r: dropout_add(x, r, P),
    "r + F.dropout(x+b)": lambda x, b, r: r + F.dropout(x + b, P, training=True),
    "bias_dropout_add": lambda x, b, r: bias_dropout_add(x, b, r, P),
    "r + x": lambda x, b, r: r + x,
}


def residual_section(rounds: int, target: float) -> list[tuple[str, float, float, str]]:
    """Forward time of the fused residual dropouts and of torch's composed expressions; the targets' rows."""
    print(f"\nresidual dropout, forward, p={P}: G elements/s (median of {rounds} interleaved rounds)")
    print(f"{'shape':>11s} " + " ".join(f"{n:>18s}" for n in RESIDUAL_SIDES) + f" {'add vs':>8s} {'bias vs':>8s}")
    checks = []
    for shape in SHAPES:
        g = torch.Generator().manual_seed(0)
        x, r, b = torch.randn(shape, generator=g), torch.randn(shape, generator=g), torch.randn(shape[1], generator=g)
        times = {name: [] for name in RESIDUAL_SIDES}
        for _ in range(rounds):
            for name, fn in RESIDUAL_SIDES.items():
                times[name].append(time_once(lambda t, fn=fn: fn(t, b, r), x, False, target))
        t = {k: statistics.median(v) for k, v in times.items()}
        add, bias = t["r + F.dropout(x)"] / t["dropout_add"], t["r + F.dropout(x+b)"] / t["bias_dropout_add"]
        cells = " ".join(f"{x.numel() / v / 1e9:18.3f}" for v in t.values())
        print(f"{shape[0]:>5d}x{shape[1]:<5d} {cells} {add:7.1f}x {bias:7.1f}x")
        if shape != SHAPES[1]:
            label = f"{shape[0]}x{shape[1]}"
            checks += [(f"dropout_add >= 10x r + F.dropout(x) at {label}", add, 10, ">="),
                       (f"bias_dropout_add >= 10x r + F.dropout(x + b) at {label}", bias, 10, ">=")]
    return checks


def saved_bytes_per_element(fn) -> float:
    x = torch.randn(1024, 1024, requires_grad=True)
    return saved_bytes(fn, x) / x.numel()


FIRST_CALL = """
import time, torch
t0 = time.perf_counter()
from droplab.functional import dropout
t1 = time.perf_counter()
dropout(torch.ones(1 << 20), 0.5)
t2 = time.perf_counter()
dropout(torch.ones(1 << 20), 0.5)
t3 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.4f}")
"""


def first_call_latency() -> list[tuple[str, list[float]]]:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "DROPLAB_CACHE_DIR": cache, "NUMBA_CACHE_DIR": cache}
        rows = []
        for label in ("cold cache", "warm cache"):
            out = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(out.stderr)
            rows.append((label, [float(v) for v in out.stdout.split()]))
        return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="3 rounds of shorter timings")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds, target = (3, 0.02) if args.quick else (args.rounds, 0.1)
    print(
        f"dropout p={P}, float32, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"CPU kernel: {cpu.backend()}, median of {rounds} interleaved rounds"
    )
    results = {}
    for shape in SHAPES:
        x = torch.randn(shape)
        for backward in (False, True):
            times = {name: [] for name in SIDES}
            for _ in range(rounds):
                for name, fn in SIDES.items():
                    times[name].append(time_once(fn, x, backward, target))
            results[shape, backward] = {k: statistics.median(v) for k, v in times.items()}

    for backward in (False, True):
        print(f"\n{'forward+backward' if backward else 'forward'}: G elements/s")
        print(f"{'shape':>11s} " + " ".join(f"{n:>18s}" for n in SIDES) + f" {'vs torch':>9s} {'vs mul2':>8s}")
        for shape in SHAPES:
            r = results[shape, backward]
            n = shape[0] * shape[1]
            cells = " ".join(f"{n / t / 1e9:18.3f}" for t in r.values())
            speedup = r["torch F.dropout"] / r["droplab dropout"]
            vs_mul = r["droplab dropout"] / r["x.mul(2.0)"]
            print(f"{shape[0]:>5d}x{shape[1]:<5d} {cells} {speedup:8.1f}x {vs_mul:7.2f}x")

    # The targets against x.mul(2.0) from a paired measurement: the two called alternately.
    calls = 100 if args.quick else 1000
    print("\nforward, droplab dropout and x.mul(2.0) called alternately (median us per call):")
    paired = {}
    for shape in SHAPES[1:]:
        a, b, ratio = paired_ratio(SIDES["droplab dropout"], SIDES["x.mul(2.0)"], torch.randn(shape), calls)
        paired[shape] = ratio
        print(f"  {shape[0]}x{shape[1]}: droplab {a * 1e6:.1f}  x.mul(2.0) {b * 1e6:.1f}  ratio {ratio:.2f}x")

    residual_checks = residual_section(rounds, target)

    print("\ntargets (forward):")
    fwd = {s: results[s, False] for s in SHAPES}
    small, mid, large = (fwd[s] for s in SHAPES)

    def speedup(r):
        return r["torch F.dropout"] / r["droplab dropout"]

    checks = [
        ("droplab >= 20x torch at 256x256", speedup(small), 20, ">="),
        ("droplab >= 10x torch at 4096x4096", speedup(large), 10, ">="),
        ("droplab time <= 2x x.mul(2.0) at 1024x1024 (paired)", paired[SHAPES[1]], 2, "<="),
        ("droplab time <= 2x x.mul(2.0) at 4096x4096 (paired)", paired[SHAPES[2]], 2, "<="),
        *residual_checks,
    ]
    for text, value, bound, op in checks:
        ok = value >= bound if op == ">=" else value <= bound
        print(f"  {text}: {value:.2f} -> {'met' if ok else 'NOT met'}")

    print("\nbytes per element saved by autograd for backward (1024x1024, float32):")
    for name in ("torch F.dropout", "dropout_reference", "droplab dropout"):
        print(f"  {name:18s} {saved_bytes_per_element(SIDES[name]):.2f}")

    print(f"\nfirst call in a fresh process, {cpu.backend()} kernel (seconds): "
          "import droplab.functional, first dropout, second")
    for label, (imp, first, second) in first_call_latency():
        print(f"  {label:10s} import {imp:.3f}  first call {first:.3f}  second call {second:.4f}")


if __name__ == "__main__":
    main()
