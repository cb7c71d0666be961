"""What a comparison says: claim lines with their verdicts, and Markdown tables.

A :class:`Claim` is one measured difference (a 95% interval over seeds, see :mod:`droplab.stats`)
and the side of 0 it is expected on; its :meth:`Claim.line` is the one line ``droplab compare``
and every study print and store. A :class:`Table` is a titled grid of formatted cells.
Both ``droplab.compare`` and ``droplab.studies`` use these; neither defines its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .stats import Interval, verdict

__all__ = ["Claim", "Table", "format_interval"]


@dataclass(frozen=True)
class Claim:
    """One verdict line: ``claim: <text> — <estimate> [low, high], n seeds — <verdict>``.

    Args:
        text: what is claimed, e.g. ``"dropout raises validation accuracy"``.
        interval: the measured difference (paired by seed) with its 95% interval.
        unit: ``"pp"`` for a difference of accuracies in percentage points (2 decimals);
            ``""`` for a figure as it is (4 decimals).
        expect_positive: whether the claim holds when the difference is above 0 (else below).

    Examples::

        >>> from droplab.stats import Interval
        >>> Claim("dropout helps", Interval(1.2, 0.8, 1.6, 5)).line()
        'claim: dropout helps — +1.20 pp [+0.80, +1.60], 5 seeds — supported'
        >>> Claim("the gap shrinks", Interval(0.01, float("nan"), float("nan"), 1), "", False).line()
        'claim: the gap shrinks — +0.0100 [n/a], 1 seed — inconclusive'
    """

    text: str
    interval: Interval
    unit: str = "pp"
    expect_positive: bool = True

    @property
    def verdict(self) -> str:
        """``supported``, ``not supported`` or ``inconclusive`` (see :func:`droplab.stats.verdict`)."""
        return verdict(self.interval, self.expect_positive)

    def line(self) -> str:
        """The claim, its estimate, interval, number of seeds and verdict, on one line."""
        i, digits = self.interval, (2 if self.unit == "pp" else 4)
        unit = " pp" if self.unit == "pp" else ""
        bounds = "n/a" if math.isnan(i.low) else f"{i.low:+.{digits}f}, {i.high:+.{digits}f}"
        seeds = f"{i.n} seed{'s' if i.n != 1 else ''}"
        return f"claim: {self.text} — {i.mean:+.{digits}f}{unit} [{bounds}], {seeds} — {self.verdict}"


@dataclass
class Table:
    """A table of formatted cells: ``title`` (none shown when empty), ``headers``, ``rows``.

    Examples::

        >>> print(Table("by seed", ["seed", "acc %"], [["0", "87.10"]]).markdown())
        **by seed**
        <BLANKLINE>
        | seed | acc % |
        |---|---|
        | 0 | 87.10 |
    """

    title: str
    headers: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        """The table in Markdown, its title in bold above it."""
        lines = [f"**{self.title}**", ""] if self.title else []
        lines += ["| " + " | ".join(self.headers) + " |", "|" + "---|" * len(self.headers)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


def format_interval(i: Interval, digits: int = 2) -> str:
    """``mean ± half-width`` of a 95% interval (just the mean for one seed).

    Examples::

        >>> from droplab.stats import Interval
        >>> format_interval(Interval(87.1, 86.9, 87.3, 5)), format_interval(Interval(87.1, math.nan, math.nan, 1))
        ('87.10 ± 0.20', '87.10')
    """
    if math.isnan(i.low):
        return f"{i.mean:.{digits}f}"
    return f"{i.mean:.{digits}f} ± {(i.high - i.low) / 2:.{digits}f}"
