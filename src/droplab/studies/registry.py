"""What a study is, and the registries of studies and probes, filled where each is defined.

A study is declared in its own module of :mod:`droplab.studies.catalog`, its configurations beside
the analysis that reads their runs, and registered there with a decorator, as Keras registers a
layer::

    RAISES = Hypothesis("dropout raises test accuracy", margin=0.3, primary=True)

    @study(name="headline", title="Dropout vs the plain MLP", question="Does dropout help?",
           variants=fixed(plain(), dropout()), hypotheses=[RAISES], base=BASE, order=10)
    def analyze(r: Results) -> Analysis:
        return Analysis([r.claim(RAISES, "dropout 0.5", "plain")], [], {})

Its hypotheses are declared there, before any run: each one's form, margin and whether it is
primary (:class:`~droplab.verdicts.Hypothesis`); the analysis measures each exactly once.

A probe (a measurement of a trained model beyond its metrics, such as the ensemble study's
Monte-Carlo averages) is registered the same way with :func:`probe`, in the module of the study
that asks for it; the jobs find it here by its name, which is part of their keys.

:data:`STUDIES` is kept sorted by each study's ``order``, a number given where it is declared
and unique among the studies: ``droplab study list`` and ``all`` follow it, whatever order the
catalog's modules are imported in. A study with no ``order`` comes after those with one, in the
order of registration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..verdicts import Hypothesis

if TYPE_CHECKING:
    from ..verdicts import Claim, Table
    from .results import Results

__all__ = ["Variant", "Analysis", "Study", "Probe", "STUDIES", "PROBES", "register", "study", "probe"]


@dataclass(frozen=True)
class Variant:
    """One configuration of a study: a name, overrides of ``TrainConfig``, probes.

    Args:
        name: how the analysis and the tables name it.
        overrides: ``TrainConfig`` fields over the study's ``base``.
        probes: the names of the probes (:data:`PROBES`) run on each trained model.
        epochs: its own number of epochs; ``None``: the study's.
        group: variants of one group are candidates for one place (e.g. the strengths of one
            kind of noise): under the fair protocol each is tuned and only the group's best on
            validation is confirmed, under the group's name; under the lecture's, its first.
    """

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    probes: tuple[str, ...] = ()
    epochs: int | None = None
    group: str | None = None


@dataclass
class Analysis:
    """What a study's analysis found: verdict lines, tables, figures (file stem -> matplotlib
    Figure) and notes, in the order ``summary.md`` shows them."""

    claims: list[Claim]
    tables: list[Table]
    figures: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Study:
    """A question, the configurations that answer it, and the analysis of their runs.

    Args:
        name: the study's name on the command line and in its directory's marker.
        title: one line for lists and reports.
        question: what the study asks.
        variants: its configurations, given whether the run is quick (a tiny setting for tests).
        analyze: turns the finished runs into an :class:`Analysis`.
        epochs: epochs of every run under the lecture's protocol, unless its variant says otherwise.
        base: ``TrainConfig`` overrides common to all variants.
        order: its place among the studies in :data:`STUDIES` (ascending, unique); ``None``: after
            those with one.
        hypotheses: what its analysis claims, declared before any run (one primary at most).
        regime: the study's own setting in words (e.g. ``"10,000 training images"``), printed with
            every claim beside the protocol's.
        max_epochs: the longest a run trains under the fair protocol (the epoch is chosen on
            validation); ``None``: ``epochs``. A variant's own ``epochs`` overrides both.
        seeds: confirmation seeds per variant, unless the caller says otherwise.
        lr_grid: the learning rates each variant is tuned over under the fair protocol.
        protocol: the only protocol the study runs under (``"lecture"`` for a replay of the
            lecture's own code), whatever is asked; ``None``: the one asked.
        in_all: whether ``droplab study all`` runs it (a study too long for the suite's budget
            runs on its own, by name).
        budget_minutes: the wall time its default setting is sized to fit, training on 2 cores;
            a run at its defaults prints it beside the plan's estimate first. ``None``: none declared.
    """

    name: str
    title: str
    question: str
    variants: Callable[[bool], list[Variant]]
    analyze: Callable[[Results], Analysis]
    epochs: int = 10
    base: Mapping[str, Any] = field(default_factory=dict)
    order: int | None = None
    hypotheses: tuple[Hypothesis, ...] = ()
    regime: str = ""
    max_epochs: int | None = None
    seeds: int = 10
    lr_grid: tuple[float, ...] = (0.03, 0.1, 0.3)
    protocol: str | None = None
    in_all: bool = True
    budget_minutes: float | None = None

    def __post_init__(self) -> None:
        texts = [h.text for h in self.hypotheses]
        if len(set(texts)) != len(texts):
            raise ValueError(f"study {self.name!r}: a hypothesis is declared twice")
        if sum(h.primary for h in self.hypotheses) > 1:
            raise ValueError(f"study {self.name!r}: more than one primary hypothesis")


@dataclass(frozen=True)
class Probe:
    """A measurement run on a trained model: ``run(model, data, seed)`` returns JSON-able figures,
    stored with the run; ``keys`` are those a stored record must hold to be served."""

    name: str
    run: Callable[..., dict]
    keys: tuple[str, ...]


STUDIES: dict[str, Study] = {}
PROBES: dict[str, Probe] = {}


def register(s: Study) -> Study:
    """Add ``s`` to :data:`STUDIES`, in its place by ``s.order``.

    Returns:
        ``s``.

    Raises:
        ValueError: a study of the same name, or of the same ``order``, is already registered.
    """
    if s.name in STUDIES:
        raise ValueError(f"a study named {s.name!r} is already registered")
    taken = [t.name for t in STUDIES.values() if s.order is not None and t.order == s.order]
    if taken:
        raise ValueError(f"study {s.name!r}: order {s.order} is taken by study {taken[0]!r}")
    ordered = sorted([*STUDIES.values(), s], key=lambda t: (t.order is None, t.order or 0))  # stable
    STUDIES.clear()
    STUDIES.update((t.name, t) for t in ordered)
    return s


def study(
    name: str,
    title: str,
    question: str,
    variants: Callable[[bool], list[Variant]],
    epochs: int = 10,
    base: Mapping[str, Any] | None = None,
    order: int | None = None,
    **options: Any,
) -> Callable[[Callable[[Results], Analysis]], Callable[[Results], Analysis]]:
    """Register the decorated analysis as the study ``name`` (the arguments, and ``options``
    such as ``hypotheses``, are :class:`Study`'s).

    Returns:
        a decorator that registers the study and returns the analysis unchanged.
    """
    if "hypotheses" in options:
        options["hypotheses"] = tuple(options["hypotheses"])

    def decorate(analyze: Callable[[Results], Analysis]) -> Callable[[Results], Analysis]:
        register(Study(name, title, question, variants, analyze, epochs, base or {}, order, **options))
        return analyze

    return decorate


def probe(name: str, keys: Iterable[str]) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Register the decorated ``run(model, data, seed) -> dict`` as the probe ``name``, whose stored
    figures hold ``keys``; a second probe of the same name is refused (ValueError)."""

    def decorate(run: Callable[..., dict]) -> Callable[..., dict]:
        if name in PROBES:
            raise ValueError(f"a probe named {name!r} is already registered")
        PROBES[name] = Probe(name, run, tuple(keys))
        return run

    return decorate
