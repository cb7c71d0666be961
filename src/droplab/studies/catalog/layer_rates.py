"""Dropout rates per layer: the lecture's advice (less dropout near the input) and exercise 1 (swap them)."""

from __future__ import annotations

from itertools import product

import numpy as np

from ... import plots
from ...stats import paired_interval
from ...verdicts import Claim, Table, format_interval
from ..registry import Analysis, Variant, study
from ..results import Results
from .common import BASE

GRID = (0.0, 0.1, 0.3, 0.5, 0.7)
GRID_QUICK = (0.0, 0.5)


def _rate_name(p1: float, p2: float) -> str:
    return f"p1={p1} p2={p2}"


def variants(quick: bool) -> list[Variant]:
    """Every (p1, p2) of the grid."""
    grid = GRID_QUICK if quick else GRID
    return [Variant(_rate_name(a, b), {"dropout": (a, b)}) for a, b in product(grid, grid)]


@study(
    name="layer-rates",
    title="Dropout rates per layer: (p1, p2) over {0, 0.1, 0.3, 0.5, 0.7}²",
    question="The lecture: less dropout near the input, more later. Exercise 1: swap the two rates.",
    variants=variants,
    base=BASE,
    order=20,
)
def analyze(r: Results) -> Analysis:
    grid = sorted({v.overrides["dropout"][0] for v in r.variants})
    means = np.array([[np.mean(r.values(_rate_name(a, b), "val_acc", 100)) for b in grid] for a in grid])
    figs = {
        "heatmap": plots.heatmap(
            means, grid, grid, "mean validation accuracy %", "p1 (first hidden layer)", "p2 (second hidden layer)"
        )
    }
    order = sorted(r.variants, key=lambda v: -np.mean(r.values(v.name, "val_acc")))
    rows = [
        [v.name, format_interval(r.interval(v.name, "val_acc", 100)), format_interval(r.interval(v.name, "gap", 1), 4)]
        for v in order
    ]
    return Analysis(_claims(r, grid), [Table("all cells, best first", ["(p1, p2)", "val acc %", "gap"], rows)], figs)


def _claims(r: Results, grid: list[float]) -> list[Claim]:
    swaps = [(a, b) for a in grid for b in grid if a < b]
    claims = []
    for a, b in swaps:
        if (a, b) in ((0.1, 0.5), (0.3, 0.7), (0.0, 0.5)):  # exercise 1's swap, at a few rates
            claims.append(
                r.claim(f"less dropout early: ({a}, {b}) beats its swap ({b}, {a})", _rate_name(a, b), _rate_name(b, a))
            )
    early = [np.mean([r.values(_rate_name(a, b), "val_acc", 100)[i] for a, b in swaps]) for i in range(len(r.seeds))]
    late = [np.mean([r.values(_rate_name(b, a), "val_acc", 100)[i] for a, b in swaps]) for i in range(len(r.seeds))]
    claims.append(
        Claim(f"less dropout early, more later, over all {len(swaps)} swapped pairs", paired_interval(early, late))
    )
    best = max(r.variants, key=lambda v: np.mean(r.values(v.name, "val_acc")))
    claims.append(r.claim(f"the best cell ({best.name}) beats no dropout", best.name, _rate_name(0.0, 0.0)))
    return claims
