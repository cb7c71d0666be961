"""The finished runs of a study, as its analysis reads them: per variant, per seed; and the
claims it makes of them.

An accuracy on the test set is measured on 10,000 images: a sample of the images the claim is
about, not the whole of them. Where each run stored which test images it classified right
(``per_image``), a claim on ``test_acc`` counts both sources of variation, the seeds and the
images (:func:`droplab.stats.two_way_estimate` on the per-image paired differences); other
figures vary by seed only (:func:`droplab.stats.paired_estimate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..stats import Estimate, Interval, mean_interval, paired_estimate, paired_interval, two_way_estimate
from ..verdicts import Claim, Hypothesis
from .jobs import config_key
from .records import unpack_correct
from .registry import Study, Variant

__all__ = ["Results", "UndeclaredHypothesis"]


class UndeclaredHypothesis(ValueError):
    """Study ``study`` measured a hypothesis, ``text``, it did not declare before its runs."""

    def __init__(self, study: str, text: str) -> None:
        super().__init__(study, text)
        self.study, self.text = study, text

    def __str__(self) -> str:
        return f"study {self.study!r} claims {self.text!r}, which it did not declare among its hypotheses"


class Results:
    """The stored result of every (variant, seed) of a study.

    Args:
        study: the study.
        variants: its variants, in its order.
        seeds: the seeds, in order.
        jobs: ``{(variant name, seed): stored record}``, a record holding ``summary``, ``history``,
            ``probes`` and ``job`` (and ``per_image`` where the run stored it).
        regime: the setting the runs trained in, in words, for the claims' lines.
        n_test: the number of test images (what a run's ``per_image`` bits are read as).
        tuning: under the fair protocol, ``{variant: {lr: [best validation accuracy per tuning seed
            (None: diverged)]}}``, for every variant tuned (every member of a group too).
        lr: the learning rate chosen per variant (and group).
        picked: ``{group: the member confirmed}``.
    """

    def __init__(self, study: Study, variants: list[Variant], seeds: list[int], jobs: dict, regime: str = "",
                 n_test: int | None = None, tuning: dict | None = None, lr: dict | None = None,
                 picked: dict | None = None) -> None:  # fmt: skip
        self.study, self.variants, self.seeds, self._jobs = study, variants, seeds, jobs
        self.regime, self.n_test = regime, n_test
        self.tuning, self.lr, self.picked = tuning or {}, lr or {}, picked or {}

    def tuning_score(self, variant: str) -> float | None:
        """A tuned variant's mean best validation accuracy at its chosen rate, on the tuning seeds (None: not tuned)."""
        if variant not in self.tuning or variant not in self.lr:
            return None
        scores = self.tuning[variant][self.lr[variant]]
        return sum(scores) / len(scores)

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

    def correct(self, variant: str) -> np.ndarray | None:
        """Which test images each seed's run classified right: bool (seeds, images), or None
        where a run did not store them."""
        rows = []
        for s in self.seeds:
            r = self._jobs[variant, s]
            if "per_image" not in r or self.n_test is None:
                return None
            rows.append(unpack_correct(r["per_image"]["test_correct"], self.n_test))
        return np.stack(rows)

    def difference(self, a: str, b: str, key: str = "test_acc") -> Estimate:
        """``a - b`` on ``key``, paired by seed (accuracies in pp): on ``test_acc``, over seeds and
        test images where the runs stored them; else over seeds."""
        if key == "test_acc" and len(self.seeds) > 1 and (ca := self.correct(a)) is not None \
                and (cb := self.correct(b)) is not None:  # fmt: skip
            return two_way_estimate(100.0 * (ca.astype(np.float64) - cb.astype(np.float64)))
        scale = 100.0 if key.endswith("acc") else 1.0
        return paired_estimate(self.values(a, key, scale), self.values(b, key, scale))

    def keys(self, variants: Sequence[str]) -> tuple[str, ...]:
        """The keys of the runs of ``variants``, variant by variant, seed by seed."""
        return tuple(config_key(self._jobs[v, s]["job"]) for v in variants for s in self.seeds)

    def measure(self, h: Hypothesis, estimate: Estimate, variants: Sequence[str], statistic: str,
                per_seed: Sequence[float]) -> Claim:  # fmt: skip
        """The claim ``h`` as measured by ``estimate``, a ``statistic`` of the runs of ``variants``
        whose value on each seed is ``per_seed`` (stored with the claim, so that anyone can
        recompute it; the estimate's mean must be their mean)."""
        if h not in self.study.hypotheses:
            raise UndeclaredHypothesis(self.study.name, h.text)
        per_seed = tuple(float(v) for v in per_seed)
        if len(per_seed) != estimate.n or abs(sum(per_seed) / len(per_seed) - estimate.mean) > 1e-9 * max(
            1.0, abs(estimate.mean)
        ):
            raise ValueError(f"claim {h.text!r}: the per-seed values (mean {sum(per_seed) / len(per_seed)!r}, "
                             f"{len(per_seed)} seeds) are not the estimate's ({estimate.mean!r}, {estimate.n})")
        return Claim(h, estimate, self.keys(variants), statistic, self.regime, per_seed=per_seed)

    def claim(self, h: Hypothesis, a: str, b: str, key: str = "test_acc") -> Claim:
        """The claim ``h`` measured as ``a - b`` on ``key`` (:meth:`difference`)."""
        scale = 100.0 if key.endswith("acc") else 1.0
        per_seed = [x - y for x, y in zip(self.values(a, key, scale), self.values(b, key, scale))]
        return self.measure(h, self.difference(a, b, key), (a, b), f"{key}: {a} − {b}", per_seed)
