"""Running a study: its protocol's runs over seeds, resumable, here or on a Ray cluster.

:func:`run_study` goes through its stages in order:

1. check the arguments, the size of the plan and the data, before any work;
2. claim the study's directory (:func:`droplab.rundir.claimed`: one study per directory, one
   process at a time) and open the store of runs (:mod:`.store`);
3. under the fair protocol (:mod:`.protocol`), tune: every variant at each learning rate of the
   grid on the tuning seeds, and choose each variant's rate on validation;
4. confirm: every variant on fresh seeds (at its rate); each stage plans one job per (variant,
   seed) (:mod:`.jobs`), keyed by a hash of its full configuration and data, collects the jobs
   whose result is already in the store (so an interrupted study resumes, and studies run into
   one store share identical runs), and trains the rest, in this process or on a Ray cluster
   (the backend, :mod:`.backends`), storing each result as it comes;
5. analyse the runs (the study's ``analyze``: each declared hypothesis measured once), adjust
   the claims' p-values for their number (Holm, within the study) and write ``study.json``,
   the plots and ``summary.md``.

Every result file is written atomically, so a killed study leaves finished jobs whole and
unfinished ones absent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import __version__, atomic, rundir
from ..data import FashionMNIST, load_fashion_mnist
from ..threads import usable_cores
from ..verdicts import Claim, adjust
from .backends import Local, Tally, train
from .jobs import config_key, job_config
from .plan import MAX_RUNS, check_size, estimate_seconds, format_seconds
from .protocol import Protocol, beyond, choose_lr, mean_score, pick_groups, tuning_table
from .registry import Analysis, Study, Variant
from .results import Results
from .store import collect, open_store

__all__ = ["StudyError", "StudyArgumentError", "run_study", "summary_markdown"]


class StudyError(ValueError):
    """A study that cannot run as asked."""


class StudyArgumentError(StudyError):
    """An argument of :func:`run_study`, ``name``, is ``value``: not ``expected``."""

    def __init__(self, name: str, value: object, expected: str = "an integer >= 1") -> None:
        super().__init__(name, value, expected)
        self.name, self.value, self.expected = name, value, expected

    def __str__(self) -> str:
        return f"{self.name} = {self.value!r} is invalid: expected {self.expected}"


def run_study(
    study: Study,
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    seeds: int | None = None,
    epochs: int | None = None,
    quick: bool = False,
    backend=None,
    store: str | os.PathLike | None = None,
    verify: bool = True,
    val_size: int = 5000,
    log: Callable[[str], None] = print,
    max_runs: int = MAX_RUNS,
    protocol: Protocol | None = None,
    plan_only: bool = False,
    progress: Callable[[Tally], None] | None = None,
) -> dict:
    """Run ``study`` under ``protocol`` (resuming what ``store`` already holds) and write its files to ``out``.

    ``seeds``: confirmation seeds per variant (None: the study's). ``protocol``: the fair protocol
    by default (:mod:`.protocol`). ``backend``: where the jobs run (:mod:`.backends`; None: here),
    the same results for the same threads per run. ``store`` defaults to ``out/runs``.
    ``plan_only``: log the plan and its estimate (a study at its defaults logs it first, with its budget),
    train nothing, write nothing. ``progress``: called with the study's :class:`~.backends.Tally` as it changes.

    Returns:
        ``study.json``'s content (with ``plan_only``: the estimate, ``{"study", "runs", "seconds", "at_most"}``).

    Raises:
        StudyArgumentError: ``seeds`` or ``epochs`` not an integer >= 1.
        PlanError: more than ``max_runs`` runs.
        droplab.rundir.RunDirError: ``out`` holds another study or other files, or is in use.
    """
    # 1. before any work: the arguments, the plan's size (a typo is not a study), the data
    protocol = protocol or Protocol()
    if study.protocol is not None and study.protocol != protocol.name:
        log(f"note: {study.name} runs under the {study.protocol} protocol only (what it studies), "
            f"not the {protocol.name} one asked")
        protocol = dataclasses.replace(protocol, name=study.protocol)
    seeds = study.seeds if seeds is None else seeds
    _check_arguments(seeds=seeds, epochs=epochs)
    variants, grid, tune_seeds = study.variants(quick), protocol.grid(study, quick), protocol.tuning_seeds(quick)
    tuning_grid = len(variants) * len(grid) * len(tune_seeds)
    check_size(len(variants), seeds, max_runs, tuning_grid + protocol.widened_runs(len(variants), grid, quick))
    out, data = Path(out), load_fashion_mnist(data_dir, val_size=val_size, verify=verify)
    if (budget := _at_defaults(study, protocol, seeds, epochs, quick, backend)) or plan_only:  # with its estimate
        if (estimate := _estimate(study, protocol, variants, seeds, epochs, quick, data, log, budget)) and plan_only:
            return estimate
    (backend := backend or Local()).connect()  # an unreachable cluster, Ray missing: an error before any write
    # 2. the study's directory, held until the study ends, and the store of runs
    with rundir.claimed(out, "study", study.name):
        store = open_store(Path(store) if store is not None else out / "runs")
        stage = _Stage(study, protocol, epochs, quick, data, store, backend, log)
        planned = len(pick_groups(variants, {}, {})[0]) * seeds + (tuning_grid if protocol.fair else 0)
        stage.tally.total, stage.tally.show = planned, progress
        start = time.perf_counter()
        # 3. tuning (fair protocol): every variant at every learning rate of the grid, on the tuning seeds
        scores, chosen = _tune(stage, variants, grid, tune_seeds) if protocol.fair else ({}, {})
        tables = [tuning_table(scores, chosen)] if protocol.fair else []
        # 4. confirmation: fresh seeds, each variant (each group's best) at its learning rate
        seed_list = list(range(seeds))
        picked_variants, picked = pick_groups(variants, scores, chosen)
        chosen |= {group: chosen[name] for group, name in picked.items() if name in chosen}
        confirm = [protocol.confirmed(v, chosen.get(v.name)) for v in picked_variants]
        done = stage.run("confirmation" if protocol.fair else "runs", confirm, seed_list)
        if diverged := [tag for tag, r in done.items() if "diverged" in r]:
            raise StudyError(f"study {study.name!r}: {diverged[0][0]} diverged on seed {diverged[0][1]} "
                             f"({done[diverged[0]]['diverged']['what']}); its learning rate is too large for it")
        wall = time.perf_counter() - start
        # 5. analyse, correct for the study's claims being many, and write the study's files
        regime = protocol.regime(study, seeds, quick)
        results = Results(study, confirm, seed_list, done, regime, len(data.test_x), scores, chosen, picked)
        analysis = study.analyze(results)
        analysis.claims = adjust(_declared(study, analysis.claims), "holm")
        analysis.tables[:0] = tables
        analysis.notes += _tuning_notes(confirm, chosen, scores, picked, grid) + _late_best(results)
        report = _report(study, protocol, regime, chosen, quick, seed_list, confirm, done, stage, wall, analysis)
        report["picked"] = picked
        _write(out, report, analysis)
        return report


class _Stage:
    """Plans, collects and trains one stage's jobs (tuning or confirmation) into the store."""

    def __init__(self, study, protocol, epochs, quick, data, store, backend, log) -> None:
        self.study, self.protocol, self.epochs, self.quick, self.data = study, protocol, epochs, quick, data
        self.threads, self.store, self.backend, self.log = backend.threads(), store, backend, log
        self.trained, self.runs, self.tally = 0, 0, Tally()

    def run(self, what: str, variants: list[Variant], seeds: list[int]) -> dict:
        """Every (variant, seed) of the stage, from the store or trained: ``{(name, seed): record}``."""
        plan = self.plan(variants, seeds)
        done, todo = collect(plan, self.store, self.log, len(self.data.test_x))
        _log_plan(f"{self.study.name} ({what})", plan, done, todo, self.store, self.backend, self.data, self.log)
        if what.startswith("tuning, grid widened"):  # runs the plan did not count on
            self.tally.total += len(plan)
        self.tally.update(finished=self.tally.finished + len(done))
        train(todo, done, self.data, self.store, self.backend, self.tally, self.log)
        self.trained, self.runs = self.trained + len(todo), self.runs + len(plan)
        return done

    def plan(self, variants: list[Variant], seeds: list[int]) -> dict[tuple[str, int], tuple[str, dict]]:
        """Every job of the stage, by (variant, seed): its key and its configuration."""
        plan = {}
        for v in variants:
            epochs = self.epochs if self.epochs is not None or self.quick else self.protocol.epochs(self.study, v)
            for s in seeds:
                job = job_config(self.study, v, s, epochs, self.quick, len(self.data.train_x))
                job["train"]["threads"] = self.threads
                job["train"]["val_size"] = len(self.data.val_x)
                job["data"] = self.data.digest  # part of the key: a store never serves runs of other data
                plan[v.name, s] = (config_key(job), job)
        return plan


def _estimate(study, protocol, variants, seeds, epochs, quick, data, log, budget: bool = False) -> dict:
    """The plan of both stages and about how long its runs take (the confirmation runs at the grid's
    middle rate: their cost does not depend on it), with the study's budget where ``budget``;
    nothing trained or written."""
    grid, tune_seeds = protocol.grid(study, quick), protocol.tuning_seeds(quick)
    stage = _Stage(study, protocol, epochs, quick, data, None, Local(), log)
    plan = stage.plan([protocol.tuned(v, lr) for v in variants for lr in grid], tune_seeds) if protocol.fair else {}
    middle = grid[len(grid) // 2]
    confirmed = pick_groups(variants, {}, {})[0]  # of each group one member is confirmed
    plan |= stage.plan([protocol.confirmed(v, middle) for v in confirmed], list(range(seeds)))
    seconds, basis = estimate_seconds((job for _, job in plan.values()), [], len(data.train_x), len(data.val_x),
                                      len(data.test_x))  # fmt: skip
    wider = protocol.widened_runs(len(variants), grid, quick)
    at_most = seconds * (1 + wider / len(plan))  # a widening run costs about what the planned ones do on average
    more = f", and up to {wider} more tuning runs if the grid widens (then up to {format_seconds(at_most)})" \
        if wider else ""  # fmt: skip
    log(f"{study.name}: {len(plan)} runs ({len(variants)} configurations; {protocol.regime(study, seeds, quick)}); "
        f"about {format_seconds(seconds)} of training ({basis}){more}"
        f"{_budget(study, at_most) if budget else ''}")
    return {"study": study.name, "runs": len(plan), "seconds": seconds, "at_most": at_most}


def _at_defaults(study: Study, protocol: Protocol, seeds: int, epochs: int | None, quick: bool, backend) -> bool:
    """Whether ``study`` declares a budget and runs as it was sized: its seeds and epochs, the default
    protocol and backend (this process, with its default threads)."""
    local = backend is None or (isinstance(backend, Local) and backend.default_threads)
    return (study.budget_minutes is not None and not quick and seeds == study.seeds and epochs is None
            and protocol == Protocol() and local)  # fmt: skip


def _budget(study: Study, seconds: float) -> str:
    """The study's declared budget, and whether ``seconds`` (the most the estimate allows) fits it."""
    fits = "fits it" if seconds <= 60 * study.budget_minutes else "is over it"
    return (f"; its budget at its defaults: {study.budget_minutes:g} min on 2 cores; this estimate, timed on this "
            f"machine ({usable_cores()} cores), {fits}")


def _tune(stage: _Stage, variants: list[Variant], grid: tuple[float, ...], seeds: list[int]) -> tuple[dict, dict]:
    """The tuning runs: every variant at every rate of ``grid`` on the tuning ``seeds``, then, for a
    variant whose best rate is an end of what it tried, the rate beyond (:func:`.protocol.beyond`),
    up to ``protocol.widen`` times; a rate beyond is chosen only if it strictly beats the end it
    widened (a tie keeps the end, in either direction). Returns the scores ``{variant: {lr: [best
    val accuracy per seed]}}`` of every rate tried, and the rate chosen per variant."""
    scores: dict[str, dict[float, list]] = {v.name: {} for v in variants}
    eligible: dict[str, dict[float, list]] = {v.name: {} for v in variants}  # what choose_lr may pick
    chosen: dict[str, float] = {}
    todo = {v.name: list(grid) for v in variants}
    for step in range(1 + stage.protocol.widen_steps(grid, stage.quick)):
        tuning = {(v.name, lr): stage.protocol.tuned(v, lr) for v in variants for lr in todo.get(v.name, [])}
        if not tuning:
            break
        done = stage.run("tuning" if step == 0 else f"tuning, grid widened ({step})", list(tuning.values()), seeds)
        for (name, lr), variant in tuning.items():
            scores[name][lr] = [_score(done[variant.name, s]) for s in seeds]
            if step == 0 or mean_score(scores[name][lr]) > mean_score(scores[name][chosen[name]]):
                eligible[name][lr] = scores[name][lr]
        chosen = choose_lr(eligible)
        todo = {name: [lr] for name, lr in ((n, beyond(chosen[n], list(scores[n]), grid)) for n in scores) if lr}
    return {name: dict(sorted(by_lr.items())) for name, by_lr in scores.items()}, chosen


def _tuning_notes(confirm: list[Variant], chosen: dict, scores: dict, picked: dict, grid: tuple) -> list[str]:
    """The grid's notes (:func:`_grid_edges`) on the confirmed variants; none without tuning."""
    if not scores:
        return []
    tried = {v.name: scores[picked.get(v.name, v.name)] for v in confirm}
    return _grid_edges({v.name: chosen[v.name] for v in confirm}, tried, grid)


def _grid_edges(chosen: dict[str, float], scores: dict[str, dict[float, list]], grid: tuple[float, ...]) -> list[str]:
    """Notes on the variants whose grid was widened, and on those whose chosen rate is still an end
    of the rates they tried: a better one may lie beyond."""
    notes = []
    for name, lr in chosen.items():
        tried = sorted(scores.get(name, grid))
        if len(tried) < 2:
            continue
        if extra := [x for x in tried if x not in grid]:
            notes.append(f"{name}: the grid's end won its tuning, so it was widened past it to "
                         f"{', '.join(f'{x:g}' for x in extra)}; chosen: {lr:g}")  # fmt: skip
        if lr in (tried[0], tried[-1]):
            end = "smallest" if lr == tried[0] else "largest"
            notes.append(f"{name}: its chosen learning rate, {lr:g}, is the {end} tried; none beyond it was tried")
    return notes


def _late_best(r: Results) -> list[str]:
    """Notes on the variants whose validation-best epoch lay in the last tenth of their epochs
    (rounded down; the last epoch, under 20) in most seeds: they may still have been improving,
    so a comparison "at their best" may not hold for them. (A study that evaluates every k-th
    epoch, as data-size does, has fewer evaluations than epochs in that window.)"""
    notes = []
    for v in r.variants:
        job = r.get(v.name, r.seeds[0])["job"]["train"]
        if job.get("select") != "best_val":
            continue
        epochs = job["epochs"]
        late = [e > epochs - max(1, epochs // 10) for e in r.values(v.name, "best_epoch")]
        if sum(late) > len(late) / 2:
            last = "the last epoch" if epochs < 20 else f"the last {epochs // 10} of {epochs} epochs"
            notes.append(f"'{v.name}': its best epoch on validation was in {last} in {sum(late)} of {len(late)} "
                         "seeds: it may still have been improving")  # fmt: skip
    return notes


def _score(record: dict) -> float | None:
    """A tuning run's score: its best validation accuracy (None: it diverged)."""
    return None if record.get("diverged") else record["summary"]["val_acc"]


def _declared(study: Study, claims: list[Claim]) -> list[Claim]:
    """``claims``, checked to measure each hypothesis the study declared exactly once."""
    made = [c.hypothesis for c in claims]
    if sorted(h.text for h in made) != sorted(h.text for h in study.hypotheses):
        missing = [h.text for h in study.hypotheses if made.count(h) != 1]
        raise StudyError(f"study {study.name!r}: its analysis must measure each declared hypothesis once; "
                         f"not so for {missing or [h.text for h in made if h not in study.hypotheses]}")  # fmt: skip
    return claims


# --- the stages, in order -------------------------------------------------------------------


def _check_arguments(**values: int | None) -> None:
    """StudyArgumentError unless every value is an integer >= 1 (``epochs`` may be None: the study's)."""
    for name, value in values.items():
        if value is None and name == "epochs":  # the study's own epochs
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise StudyArgumentError(name, value)


def _log_plan(name: str, plan: dict, done: dict, todo: dict, store: Path, backend, data: FashionMNIST, log) -> None:
    """One line: the runs, how many the store holds, where the rest run, and about how long they take."""
    seconds, basis = estimate_seconds(
        (job for _, job in todo.values()), done.values(), len(data.train_x), len(data.val_x), len(data.test_x)
    )
    configurations, seeds = len({v for v, _ in plan}), len({s for _, s in plan})
    log(f"{name}: {configurations} configurations x {seeds} seeds = {len(plan)} runs "
        f"({len(done)} already in {store}), on {backend.describe()}; "
        f"about {format_seconds(seconds)} of training to go ({basis})")  # fmt: skip


def _report(study: Study, protocol: Protocol, regime: str, chosen: dict, quick: bool, seeds: list[int],
            variants: list[Variant], done: dict, stage: _Stage, wall: float, analysis: Analysis) -> dict:  # fmt: skip
    """``study.json``: the study, its protocol, what its analysis found, and every confirmation run's record."""
    return {
        "study": study.name,
        "title": study.title,
        "question": study.question,
        "protocol": protocol.name,
        "regime": regime,
        "lr_chosen": chosen,
        "tuning_seeds": protocol.tuning_seeds(quick),
        "seeds": seeds,
        "quick": quick,
        "droplab": __version__,
        "wall_seconds": wall,
        "runs": stage.runs,
        "runs_trained": stage.trained,
        "train_seconds": sum(r["summary"]["seconds"] for r in done.values()),  # confirmation runs, whenever trained
        "claims": [c.record() for c in analysis.claims],
        "tables": [dataclasses.asdict(t) for t in analysis.tables],
        "notes": analysis.notes,
        "figures": [f"{stem}.png" for stem in analysis.figures],
        "variants": {v.name: _variant_record(v.name, seeds, done) for v in variants},
    }


def _variant_record(name: str, seeds: list[int], done: Mapping[tuple[str, int], Any]) -> dict:
    """A variant as ``study.json`` keeps it: its configuration, and per seed its run's key and record."""
    runs = [done[name, s] for s in seeds]
    return {
        "config": json.loads(json.dumps(runs[0]["job"])),
        "per_seed": [
            {"seed": s, "key": config_key(r["job"]), "summary": r["summary"], "history": r["history"],
             "probes": r["probes"], **({"per_image": r["per_image"]} if "per_image" in r else {})}
            for s, r in zip(seeds, runs)
        ],
    }  # fmt: skip


def _write(out: Path, report: Mapping[str, Any], analysis: Analysis) -> None:
    """The plots, ``study.json`` and ``summary.md``, each written atomically."""
    for stem, fig in analysis.figures.items():
        atomic.save_figure(out / f"{stem}.png", fig)
    atomic.write_json(out / "study.json", report)
    atomic.write_text(out / "summary.md", summary_markdown(report, analysis))


def summary_markdown(report: Mapping[str, Any], analysis: Analysis) -> str:
    """``summary.md``: the study's question, its claims, tables, notes and figures."""
    lines = [f"# {report['title']}", "", f"*{report['question']}*", ""]
    lines += [f"Protocol: {report['protocol']} ({report['regime']}); {report['runs']} runs, "
              f"{report['runs_trained']} trained in this call, {report['wall_seconds']:.0f} s.", ""]  # fmt: skip
    lines += ["```text", *[c.line() for c in analysis.claims], "```", ""]
    for t in analysis.tables:
        lines += [t.markdown(), ""]
    lines += [f"- {n}" for n in analysis.notes] + ([""] if analysis.notes else [])
    lines += [f"![{stem}]({stem}.png)" for stem in analysis.figures]
    return "\n".join(lines) + "\n"
