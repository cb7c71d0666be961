"""How a study's runs are chosen and scored: the fair protocol, or the lecture's budget.

Under the **fair** protocol (the default) every variant is compared at its best, as a reviewer
would ask:

1. *tuning*: each variant trains at every learning rate of the study's grid, on tuning seeds
   (``TUNE_SEED_BASE + k``); each run keeps the weights of its best epoch on validation, as early
   stopping would (``select="best_val"``); the learning rate with the highest mean best validation
   accuracy is the variant's. When that rate is an end of the grid, the grid is widened past it,
   one step of the grid's own ratio at a time (``widen`` steps at most), until the rate chosen
   is not an end, the next rate diverges, or the steps run out: a best rate at the edge of what
   was tried says only that a better one may lie beyond;
2. *confirmation*: fresh seeds, disjoint from the tuning seeds (``0 .. n-1``), train each variant
   at its learning rate, again keeping the validation-best epoch; each run is scored once on the
   test set, at that epoch. The test set chooses nothing.

Under the **lecture**'s protocol the study runs as the lecture does: its learning rate, its
number of epochs, scored at the last epoch (``--protocol lecture`` replays the earlier design).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..verdicts import Table
from .registry import Study, Variant

__all__ = ["PROTOCOLS", "TUNE_SEED_BASE", "Protocol", "ProtocolError", "beyond", "choose_lr", "mean_score",
           "pick_groups", "tuning_table"]

PROTOCOLS = ("fair", "lecture")
TUNE_SEED_BASE = 10_000  # tuning seeds start here; confirmation seeds are 0 .. n-1 (a study has at most MAX_RUNS)


class ProtocolError(ValueError):
    """A protocol asked with ``field`` = ``value``: not ``expected``."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        super().__init__(field, value, expected)
        self.field, self.value, self.expected = field, value, expected

    def __str__(self) -> str:
        return f"{self.field} = {self.value!r} is invalid: expected {self.expected}"


@dataclass(frozen=True)
class Protocol:
    """Which protocol, and its sizes.

    Args:
        name: ``"fair"`` or ``"lecture"``.
        tune_seeds: tuning seeds per (variant, learning rate) (fair protocol).
        lr_grid: the learning rates tried; ``None``: the study's own grid.
        widen: at most this many rates tried past an end of the grid that was chosen (0: none;
            never in the quick setting).

    Examples::

        >>> Protocol().tuning_seeds()
        [10000, 10001]
        >>> Protocol("lecture").tuning_seeds()
        []
        >>> Protocol(lr_grid=(0.1, -1.0))
        Traceback (most recent call last):
        ...
        droplab.studies.protocol.ProtocolError: lr_grid = (0.1, -1.0) is invalid: expected distinct learning rates > 0
    """

    name: str = "fair"
    tune_seeds: int = 2
    lr_grid: tuple[float, ...] | None = None
    widen: int = 2

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise ProtocolError("protocol", self.name, " or ".join(PROTOCOLS))
        if not isinstance(self.tune_seeds, int) or isinstance(self.tune_seeds, bool) or not 1 <= self.tune_seeds \
                <= TUNE_SEED_BASE:  # fmt: skip
            raise ProtocolError("tune_seeds", self.tune_seeds, f"an integer from 1 to {TUNE_SEED_BASE}")
        grid = self.lr_grid
        if grid is not None and (
            not grid or len(set(grid)) != len(grid)
            or not all(isinstance(x, (int, float)) and math.isfinite(x) and 0 < x <= 100 for x in grid)
        ):  # fmt: skip
            raise ProtocolError("lr_grid", grid, "distinct learning rates > 0")
        if not isinstance(self.widen, int) or isinstance(self.widen, bool) or not 0 <= self.widen <= 10:
            raise ProtocolError("widen", self.widen, "an integer from 0 to 10")

    @property
    def fair(self) -> bool:
        return self.name == "fair"

    def tuning_seeds(self, quick: bool = False) -> list[int]:
        """The tuning seeds (none under the lecture's protocol; one in the quick setting)."""
        if not self.fair:
            return []
        return [TUNE_SEED_BASE + k for k in range(1 if quick else self.tune_seeds)]

    def grid(self, study: Study, quick: bool = False) -> tuple[float, ...]:
        """The learning rates tried (the grid's ends in the quick setting)."""
        grid = tuple(self.lr_grid or study.lr_grid)
        return (grid[0], grid[-1]) if quick and len(grid) > 2 else grid

    def widen_steps(self, grid: Sequence[float], quick: bool = False) -> int:
        """How many times the grid may widen: ``widen``; none in the quick setting, under the
        lecture's protocol, or for a grid of one rate."""
        return 0 if not self.fair or quick or len(grid) < 2 else self.widen

    def widened_runs(self, variants: int, grid: Sequence[float], quick: bool = False) -> int:
        """The most tuning runs widening can add: one rate per variant and step."""
        return self.widen_steps(grid, quick) * variants * len(self.tuning_seeds(quick))

    def epochs(self, study: Study, variant: Variant) -> int:
        """The epochs a variant's runs train (the fair protocol's longest, or the lecture's)."""
        if variant.epochs is not None:
            return variant.epochs
        return (study.max_epochs or study.epochs) if self.fair else study.epochs

    def regime(self, study: Study, seeds: int, quick: bool) -> str:
        """The setting every claim of the study was measured in, in words."""
        epochs = sorted({self.epochs(study, v) for v in study.variants(quick)})
        span = f"{epochs[0]}" if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]}"
        if quick:
            span = "2"
        if self.fair:
            grid = ", ".join(f"{x:g}" for x in self.grid(study, quick))
            wider = f", widened up to {self.widen} step(s) past a chosen end" if self.widen_steps(
                self.grid(study), quick) else ""  # fmt: skip
            words = (f"lr tuned over {{{grid}}}{wider} on {len(self.tuning_seeds(quick))} seed(s), ≤ {span} epochs, "
                     f"best epoch on val, {seeds} fresh seeds, test set")  # fmt: skip
        else:
            lr = study.base.get("lr", 0.1)
            words = f"lecture budget: lr {lr:g}, {span} epochs, last epoch, {seeds} seeds, test set"
        own = [study.regime] if study.regime else []
        return "; ".join([words, *own, *(["quick setting"] if quick else [])])

    def tuned(self, variant: Variant, lr: float) -> Variant:
        """``variant`` at learning rate ``lr``, keeping its validation-best epoch (no probes: tuning reads val)."""
        return Variant(f"{variant.name} @ lr {lr:g}", {**variant.overrides, "lr": lr, "select": "best_val"},
                       (), variant.epochs)  # fmt: skip

    def confirmed(self, variant: Variant, lr: float | None) -> Variant:
        """``variant`` as its confirmation runs train: at ``lr``, its validation-best epoch (fair);
        as declared (lecture)."""
        if not self.fair:
            return variant
        return dataclasses.replace(variant, overrides={**variant.overrides, "lr": lr, "select": "best_val"})


def choose_lr(scores: Mapping[str, Mapping[float, Sequence[float | None]]]) -> dict[str, float]:
    """Per variant, the learning rate of the highest mean score (the best validation accuracy
    of each tuning seed; ``None`` for a run that diverged, which rules its rate out); the
    smaller rate on a tie.

    Examples::

        >>> choose_lr({"plain": {0.03: [0.85, 0.86], 0.1: [0.87, 0.86], 0.3: [None, 0.9]}})
        {'plain': 0.1}
    """
    out = {}
    for name, by_lr in scores.items():
        usable = {lr: m for lr, v in by_lr.items() if (m := mean_score(v)) > -math.inf}
        if not usable:
            raise ProtocolError(f"learning rates of {name!r}", tuple(by_lr), "one at which no tuning run diverged")
        best = max(usable.values())
        out[name] = min(lr for lr, m in usable.items() if m == best)
    return out


def mean_score(values: Sequence[float | None]) -> float:
    """A rate's mean tuning score; -inf when a run at it diverged (``None``) or none ran: it can beat nothing."""
    return -math.inf if not values or any(x is None for x in values) else sum(values) / len(values)


def beyond(chosen: float, tried: Sequence[float], grid: Sequence[float]) -> float | None:
    """The next rate to try past ``chosen`` when it is an end of the rates ``tried``: the next of
    the 1-3-10 series when the grid is on it (its rates' leading digits are 1 and 3), otherwise
    one step of the grid's own ratio at that end (to 2 significant digits); None when ``chosen``
    lies inside what was tried, the grid has one rate, or the next rate is not strictly past
    every rate tried or leaves (1e-6, 100].

    Examples::

        >>> beyond(0.3, [0.03, 0.1, 0.3], [0.03, 0.1, 0.3]), beyond(0.03, [0.03, 0.1, 0.3], [0.03, 0.1, 0.3])
        (1.0, 0.01)
        >>> beyond(0.4, [0.1, 0.2, 0.4], [0.1, 0.2, 0.4]), beyond(0.001, [0.001, 0.01, 0.1], [0.001, 0.01, 0.1])
        (0.8, 0.0001)
        >>> beyond(0.3, [0.03, 0.1, 0.3, 1.0], [0.03, 0.1, 0.3]) is None  # 0.3 is inside what was tried
        True
    """
    grid = sorted(grid)
    if len(grid) < 2 or chosen not in (min(tried), max(tried)):
        return None
    up = chosen == max(tried)
    if {_mantissa(x) for x in grid} == {1.0, 3.0}:
        step = (3.0 if _mantissa(chosen) == 1 else 10 / 3) if up else (1 / 3 if _mantissa(chosen) == 3 else 0.3)
    else:
        step = grid[-1] / grid[-2] if up else grid[0] / grid[1]
    nxt = float(f"{chosen * step:.2g}")
    past = nxt > max(tried) if up else nxt < min(tried)
    return nxt if past and 1e-6 < nxt <= 100 else None


def _mantissa(x: float) -> float:
    """``x``'s leading digits, in [1, 10), to 6 significant digits: 0.03 -> 3.0."""
    return float(f"{x / 10 ** math.floor(math.log10(x)):.6g}")


def pick_groups(variants: Sequence[Variant], scores: Mapping[str, Mapping[float, Sequence[float | None]]],
                chosen: Mapping[str, float]) -> tuple[list[Variant], dict[str, str]]:  # fmt: skip
    """The variants to confirm: every variant of no group, and of each group its member with the
    highest mean tuning score at its chosen rate (its first, without scores: the lecture's
    protocol), renamed to the group, in the place of the group's first member.

    Returns:
        the variants, and ``{group: the member picked}``.

    Examples::

        >>> vs = [Variant("plain"), Variant("g 0.2", group="gaussian"), Variant("g 0.5", group="gaussian")]
        >>> out, picked = pick_groups(vs, {"g 0.2": {0.1: [0.8]}, "g 0.5": {0.1: [0.9]}}, {"g 0.2": 0.1, "g 0.5": 0.1})
        >>> [v.name for v in out], picked
        (['plain', 'gaussian'], {'gaussian': 'g 0.5'})
    """
    out, picked = [], {}
    for v in variants:
        if v.group is None:
            out.append(v)
            continue
        if v.group in picked:
            continue
        members = [w for w in variants if w.group == v.group]
        mean = lambda w: mean_score(scores[w.name][chosen[w.name]])  # noqa: E731
        best = max(members, key=mean) if scores else members[0]  # max: the first on a tie
        picked[v.group] = best.name
        out.append(dataclasses.replace(best, name=v.group, group=None))
    return out, picked


def tuning_table(scores: Mapping[str, Mapping[float, Sequence[float | None]]],
                 chosen: Mapping[str, float]) -> Table:  # fmt: skip
    """Mean best validation accuracy (%) per variant and learning rate; the chosen one starred."""
    grid = sorted({lr for by_lr in scores.values() for lr in by_lr})

    def cell(name: str, lr: float) -> str:
        v = scores[name].get(lr, [])
        if any(x is None for x in v):
            return "diverged"
        text = f"{100 * sum(v) / len(v):.2f}" if v else ""
        return f"**{text}** ★" if chosen.get(name) == lr else text

    rows = [[name] + [cell(name, lr) for lr in grid] for name in scores]
    return Table("tuning: mean best validation accuracy % per learning rate (★: chosen)", ["variant"] +
                 [f"lr {lr:g}" for lr in grid], rows)  # fmt: skip
