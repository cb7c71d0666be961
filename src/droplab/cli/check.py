"""``droplab check``: the lecture's quick check, and an empirical check of both dropout implementations."""

from __future__ import annotations

import argparse
import math

import torch
from rich.console import Console

from ..functional import IMPLEMENTATIONS
from .console import print_table
from .errors import UsageError

__all__ = ["add_parser", "cmd_check"]

MAX_DRAWS = 10**8  # 400 MB of float32 ones per p
TITLES = {
    "reference": "dropout_reference (the lecture's code: mask from uniform draws)",
    "fast": "dropout (droplab's fast kernel: counter-based mask)",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser("check", help="the lecture's quick check and an empirical check")
    check.add_argument("--draws", type=int, default=1_000_000, help="draws per p (default: 10^6)")
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(func=cmd_check)


def _implementations():
    """(name, function) pairs, the lecture's reference first."""
    return [(name, IMPLEMENTATIONS[name]) for name in TITLES]


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    if not 1 <= args.draws <= MAX_DRAWS:
        raise UsageError(f"--draws {args.draws}: invalid, expected an integer from 1 to {MAX_DRAWS:,}")
    if not 0 <= args.seed < 2**63:
        raise UsageError(f"--seed {args.seed}: invalid, expected an integer in [0, 2**63)")
    x = torch.arange(16, dtype=torch.float32).reshape(2, 8)
    console.print("The lecture's quick check: X = arange(16).reshape(2, 8)")
    for name, fn in _implementations():
        torch.manual_seed(args.seed)
        console.print(f"\n{TITLES[name]}:")
        for p in (0.0, 0.5, 1.0):
            console.print(f"dropout(X, p={p}):\n{fn(x, p)}")
    n = args.draws
    console.print(
        f"\nEmpirical check over {n:,} draws per p (input of ones, seed {args.seed}); "
        "bounds are 5 binomial standard deviations:"
    )
    rows = [["dropout", "p", "kept fraction", "expected", "5σ bound", "E[h']/h", "5σ bound", "result"]]
    ok = True
    for name, fn in _implementations():
        torch.manual_seed(args.seed)
        for p in (0.1, 0.5, 0.9):
            out = fn(torch.ones(n), p)
            kept = (out != 0).double().mean().item()
            ratio = out.double().mean().item()
            kept_bound = 5 * math.sqrt(p * (1 - p) / n)
            ratio_bound = 5 * math.sqrt(p / (1 - p) / n)  # std of h' for h = 1 is sqrt(p / (1 - p))
            good = abs(kept - (1 - p)) <= kept_bound and abs(ratio - 1) <= ratio_bound
            ok &= good
            rows.append([
                name, f"{p}", f"{kept:.5f}", f"{1 - p:.5f}", f"±{kept_bound:.5f}",
                f"{ratio:.5f}", f"±{ratio_bound:.5f}", "ok" if good else "FAIL",
            ])  # fmt: skip
    print_table(console, rows)
    console.print("all within bounds" if ok else "OUTSIDE the 5σ bounds: dropout is biased")
    return 0 if ok else 1
