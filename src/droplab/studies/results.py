"""The finished runs of a study, as its analysis reads them: per variant, per seed."""

from __future__ import annotations

from typing import Any

from ..stats import Interval, mean_interval, paired_interval
from ..verdicts import Claim
from .registry import Study, Variant

__all__ = ["Results"]


class Results:
    """The stored result of every (variant, seed) of a study.

    Args:
        study: the study.
        variants: its variants, in its order.
        seeds: the seeds, in order.
        jobs: ``{(variant name, seed): stored record}``, a record holding ``summary``, ``history``,
            ``probes`` and ``job``.
    """

    def __init__(self, study: Study, variants: list[Variant], seeds: list[int], jobs: dict) -> None:
        self.study, self.variants, self.seeds, self._jobs = study, variants, seeds, jobs

    def get(self, variant: str, seed: int) -> dict:
        """The stored record of one run."""
        return self._jobs[variant, seed]

    def values(self, variant: str, key: str, scale: float = 1.0) -> list[float]:
        """``summary[key]`` (or a probe figure, ``probe.path``) of ``variant``, one per seed."""
        out = []
        for s in self.seeds:
            r = self._jobs[variant, s]
            v: Any = r["probes"] if "." in key else r["summary"]
            for part in key.split("."):
                v = v[part]
            out.append(float(v) * scale)
        return out

    def history(self, variant: str, key: str) -> list[list[float]]:
        """``key`` at each evaluated epoch, one list per seed."""
        return [[h[key] for h in self._jobs[variant, s]["history"]] for s in self.seeds]

    def interval(self, variant: str, key: str, scale: float = 1.0) -> Interval:
        """95% interval of the mean of ``key`` over seeds."""
        return mean_interval(self.values(variant, key, scale))

    def paired(self, a: str, b: str, key: str, scale: float = 1.0) -> Interval:
        """95% interval of ``a - b`` over seeds."""
        return paired_interval(self.values(a, key, scale), self.values(b, key, scale))

    def claim(self, text: str, a: str, b: str, key: str = "val_acc", expect_positive: bool = True) -> Claim:
        """A claim that ``a`` beats ``b`` on ``key`` (accuracies in pp; others as they are)."""
        acc = key.endswith("acc")
        return Claim(text, self.paired(a, b, key, 100.0 if acc else 1.0), "pp" if acc else "", expect_positive)
