"""What a comparison says: hypotheses declared before any run, the claims measured for them, and tables.

A :class:`Hypothesis` is declared in a study's definition, before any run: what is claimed, its
form (``superiority``: a difference in a direction; ``equivalence``: no difference larger than
the margin), its margin δ, and whether it is the study's primary claim. A :class:`Claim` is a
hypothesis with its measured :class:`~droplab.stats.Estimate` (a difference with its standard
error), the runs it was computed from and the regime they ran in. Its outcome is one of four:

- *equivalent*: the difference lies within ±δ (TOST at level α);
- *supported*: the difference is shown on the claimed side of 0;
- *contradicted*: shown on the other side (for an equivalence claim: shown beyond the margin);
- *inconclusive*: none of these.

Each test's p-value is adjusted for the family it belongs to (Holm within a study, see
:mod:`droplab.studies.engine`; Benjamini–Hochberg across a suite's primary claims) and the outcome
read from the adjusted p-values; the interval printed is the unadjusted 95% interval. A
:class:`Table` is a titled grid of formatted cells.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from dataclasses import dataclass

from .stats import (
    ALPHA,
    Estimate,
    Interval,
    benjamini_hochberg,
    holm,
    mde,
    outcome,
    p_difference,
    p_equivalence,
    p_inferiority,
    p_nonequivalence,
    p_noninferiority,
    seeds_for,
)

__all__ = ["KINDS", "Hypothesis", "Claim", "Table", "adjust", "format_interval", "HypothesisError"]

KINDS = ("superiority", "equivalence", "noninferiority")


class HypothesisError(ValueError):
    """A hypothesis declared with ``field`` = ``value``, not ``expected``."""

    def __init__(self, text: str, field: str, value: object, expected: str) -> None:
        super().__init__(text, field, value, expected)
        self.text, self.field, self.value, self.expected = text, field, value, expected

    def __str__(self) -> str:
        return f"hypothesis {self.text!r}: {self.field} = {self.value!r} is invalid: expected {self.expected}"


@dataclass(frozen=True)
class Hypothesis:
    """A claim as declared before any run.

    Args:
        text: what is claimed, e.g. ``"dropout raises test accuracy"``.
        kind: ``"superiority"`` (a difference on the claimed side of 0), ``"equivalence"`` (no
            difference beyond ±``margin``) or ``"noninferiority"`` (not worse than ``margin`` on
            the claimed side: "as good as or better").
        margin: δ > 0, in the claim's unit: the smallest difference that matters.
        primary: whether it is its study's primary claim (the one the suite's correction counts).
        expect_positive: a superiority claim holds when the difference is above 0 (else below).
        unit: ``"pp"``: a difference of accuracies in percentage points; ``""``: a figure as it is.

    Examples::

        >>> Hypothesis("dropout raises test accuracy", margin=0.3, primary=True).kind
        'superiority'
        >>> Hypothesis("x", kind="better")
        Traceback (most recent call last):
        ...
        droplab.verdicts.HypothesisError: hypothesis 'x': kind = 'better' is invalid: expected superiority, ...
    """

    text: str
    kind: str = "superiority"
    margin: float = 0.3
    primary: bool = False
    expect_positive: bool = True
    unit: str = "pp"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise HypothesisError(self.text, "kind", self.kind, ", ".join(KINDS[:-1]) + " or " + KINDS[-1])
        if not isinstance(self.margin, (int, float)) or not math.isfinite(self.margin) or self.margin <= 0:
            raise HypothesisError(self.text, "margin", self.margin, "a finite number > 0")
        if self.unit not in ("pp", ""):
            raise HypothesisError(self.text, "unit", self.unit, "'pp' or ''")


@dataclass(frozen=True)
class Claim:
    """A hypothesis measured: the estimate, where it came from, and (once the engine has
    corrected for multiplicity) its adjusted p-values.

    Args:
        hypothesis: what was declared.
        estimate: the measured difference and its standard error.
        runs: the keys of the runs it was computed from, in the order of the comparison
            (identical runs and statistic: the same claim, made once in a suite).
        statistic: what was computed from them, e.g. ``"test_acc: dropout 0.5 − plain"``.
        regime: the setting the runs trained in, printed on the line.
        p_adjusted: the adjusted p-value of the claim's own test (None: not adjusted yet: raw).
        p_other_adjusted: the adjusted p-value of its other test (equivalence for a superiority
            claim; non-equivalence for an equivalence claim).
        family: the number of tests in the family its p-values were adjusted in.
        per_seed: the statistic's value on each seed (their mean is the estimate's).

    Examples::

        >>> from droplab.stats import Estimate
        >>> h = Hypothesis("dropout helps", margin=0.3)
        >>> c = Claim(h, Estimate(1.2, 0.2, 9.0, 10))
        >>> c.outcome, round(c.p, 6) < 0.001
        ('supported', True)
        >>> Claim(h, Estimate(0.02, 0.05, 9.0, 10)).outcome
        'equivalent'
        >>> Claim(h, Estimate(-1.2, 0.2, 9.0, 10)).outcome
        'contradicted'
        >>> Claim(h, Estimate(0.2, 0.3, 9.0, 10)).outcome
        'inconclusive'
    """

    hypothesis: Hypothesis
    estimate: Estimate
    runs: tuple[str, ...] = ()
    statistic: str = ""
    regime: str = ""
    p_adjusted: float | None = None
    p_other_adjusted: float | None = None
    family: int = 1
    per_seed: tuple[float, ...] = ()

    # --- the two tests: the claim's own, and the other one
    @property
    def p(self) -> float:
        """The raw p-value of the claim's own test: a difference from 0 (two-sided) for a
        superiority claim, TOST within ±δ for an equivalence claim."""
        h = self.hypothesis
        if h.kind == "equivalence":
            return p_equivalence(self.estimate, h.margin)
        if h.kind == "noninferiority":
            return p_noninferiority(self.estimate, h.margin, h.expect_positive)
        return p_difference(self.estimate)

    @property
    def p_other(self) -> float:
        """The raw p-value of the other test: TOST (superiority claim), beyond δ (equivalence claim)."""
        h = self.hypothesis
        if h.kind == "equivalence":
            return p_nonequivalence(self.estimate, h.margin)
        if h.kind == "noninferiority":
            return p_inferiority(self.estimate, h.margin, h.expect_positive)
        return p_equivalence(self.estimate, h.margin)

    def adjusted(self, p: float, p_other: float, family: int) -> Claim:
        """This claim with adjusted p-values, from a family of ``family`` tests."""
        return dataclasses.replace(self, p_adjusted=p, p_other_adjusted=p_other, family=family)

    @property
    def outcome(self) -> str:
        """``supported``, ``contradicted``, ``equivalent`` or ``inconclusive``, from the adjusted p-values."""
        p = self.p if self.p_adjusted is None else self.p_adjusted
        q = self.p_other if self.p_other_adjusted is None else self.p_other_adjusted
        h = self.hypothesis
        p_equiv, p_diff = (p, q) if h.kind == "equivalence" else (q, p)
        return outcome(self.estimate, h.kind, h.margin, h.expect_positive, p_diff, p_equiv, ALPHA)

    @functools.cached_property
    def mde(self) -> float:
        """The smallest margin this design resolves at 80% power, within its family (see :func:`droplab.stats.mde`)."""
        return mde(self.estimate.se, self.estimate.df, ALPHA, 0.8, self.family)

    @functools.cached_property
    def seeds_needed(self) -> int | None:
        """The fewest seeds whose MDE would be at most the margin, this design's variances given
        (None: none up to 1,000, e.g. where the test images' share alone is too large)."""
        e = self.estimate
        if math.isnan(e.se) or e.n < 2:
            return None
        seed_var = max(e.se**2 - e.image_se**2, 0.0) * e.n
        return seeds_for(self.hypothesis.margin, math.sqrt(seed_var), e.image_se**2, ALPHA, 0.8, self.family)

    def _more_seeds(self) -> str:
        """What more seeds would do for an underpowered claim, in words."""
        if self.seeds_needed is not None:
            return f"about {self.seeds_needed} seeds would resolve ±δ"
        e = self.estimate
        floor = mde(e.image_se, math.inf, ALPHA, 0.8, self.family) if e.image_se > 0 else 0.0
        if floor > self.hypothesis.margin:
            return f"no number of seeds would resolve ±δ (the test images alone hold the MDE above {floor:.2f})"
        return "more than 1,000 seeds would be needed to resolve ±δ"

    @property
    def identity(self) -> str:
        """The same runs, the same statistic and the same form of claim: the same claim (16 hex digits)."""
        h = self.hypothesis
        text = "\n".join([*self.runs, self.statistic, h.kind, "positive" if h.expect_positive else "negative"])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_record(cls, r: dict) -> Claim:
        """The claim a :meth:`record` holds (what a suite reads back from ``study.json``)."""
        h = Hypothesis(r["text"], r["kind"], r["margin"], r["primary"], r["expect_positive"], r["unit"])
        nan = lambda v: math.nan if v is None else float(v)  # noqa: E731
        e = Estimate(r["estimate"], nan(r["se"]), nan(r["df"]), r["seeds"], nan(r["image_se"]))
        return cls(h, e, tuple(r["runs"]), r["statistic"], r["regime"], nan(r["p_adjusted"]),
                   nan(r["p_other_adjusted"]), r["family"], tuple(r["per_seed"]))  # fmt: skip

    # --- how it is shown and stored
    def line(self) -> str:
        """``claim: <text> — <estimate> [95% interval] (δ, p, adjusted p, MDE) — <outcome> (<regime>)``."""
        h, e = self.hypothesis, self.estimate
        digits, unit = (2, " pp") if h.unit == "pp" else (4, "")
        i = e.interval()
        bounds = "n/a" if math.isnan(i.low) else f"{i.low:+.{digits}f}, {i.high:+.{digits}f}"
        p_adj = self.p if self.p_adjusted is None else self.p_adjusted
        sign = "−" if h.expect_positive else "+"
        form = {"equivalence": "≈ within ±", "noninferiority": f"no worse than {sign}"}.get(h.kind, "δ ±")
        power = ""
        if not math.isnan(self.mde) and self.mde > h.margin:
            power = "; underpowered: " + self._more_seeds()
        stats = (f"{form}{h.margin:.{digits}g}{unit}; p {_p(self.p)}, adjusted {_p(p_adj)}; "
                 f"MDE {_figure(self.mde, digits)}{power}")  # fmt: skip
        regime = f" ({self.regime})" if self.regime else ""
        return f"claim: {h.text} — {e.mean:+.{digits}f}{unit} [{bounds}] ({stats}) — {self.outcome}{regime}"

    def record(self) -> dict:
        """The claim as ``study.json`` keeps it (the issue's fields, and how it was computed)."""
        h, e, i = self.hypothesis, self.estimate, self.estimate.interval()
        return {
            "text": h.text, "primary": h.primary, "kind": h.kind, "margin": h.margin, "unit": h.unit,
            "expect_positive": h.expect_positive, "estimate": e.mean, "interval": [_json(i.low), _json(i.high)],
            "se": _json(e.se), "image_se": _json(e.image_se), "df": _json(e.df),
            "p": _json(self.p), "p_adjusted": _json(self.p if self.p_adjusted is None else self.p_adjusted),
            "p_other": _json(self.p_other),
            "p_other_adjusted": _json(self.p_other if self.p_other_adjusted is None else self.p_other_adjusted),
            "family": self.family, "mde": _json(self.mde), "seeds_needed": self.seeds_needed,
            "outcome": self.outcome, "regime": self.regime,
            "seeds": e.n, "per_seed": list(self.per_seed), "runs": list(self.runs), "statistic": self.statistic,
            "identity": self.identity,
            "line": self.line(),
        }  # fmt: skip


def adjust(claims: list[Claim], method: str = "holm", family: int | None = None) -> list[Claim]:
    """``claims`` with the p-values of both their tests adjusted over one family, all 2m tests of
    the m claims together: ``"holm"`` (family-wise error) or ``"bh"`` (Benjamini–Hochberg, false
    discovery rate). A claim's two tests can each give a wrong outcome (a false supported or
    contradicted, a false equivalent), so both belong to the family. Adjusted again, a claim's
    adjusted p-values are what is adjusted (so a primary claim adjusted within its study, then
    across a suite, must survive both).

    ``family``: the family's size recorded for each claim's MDE (default: the 2m tests).

    Examples::

        >>> from droplab.stats import Estimate
        >>> hs = [Hypothesis(f"h{i}") for i in range(3)]
        >>> cs = adjust([Claim(h, Estimate(m, 1.0, 30.0, 31)) for h, m in zip(hs, (3.5, 2.2, 0.1))])
        >>> [c.outcome for c in cs], [c.family for c in cs]
        (['supported', 'inconclusive', 'inconclusive'], [6, 6, 6])
    """
    if method not in ("holm", "bh"):
        raise ValueError(f"method = {method!r} is invalid: expected 'holm' or 'bh'")
    if not claims:
        return []
    f = holm if method == "holm" else benjamini_hochberg
    both = f([c.p if c.p_adjusted is None else c.p_adjusted for c in claims]
             + [c.p_other if c.p_other_adjusted is None else c.p_other_adjusted for c in claims])  # fmt: skip
    m = len(claims)
    n = 2 * m if family is None else family
    return [c.adjusted(p, q, n) for c, p, q in zip(claims, both[:m], both[m:])]


def _json(v: float) -> float | None:
    """JSON has no NaN: ``None`` stands for a figure that could not be computed."""
    return None if v is None or math.isnan(v) else float(v)


def _p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _figure(v: float, digits: int) -> str:
    return "n/a" if math.isnan(v) else f"{v:.{digits}f}"


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
