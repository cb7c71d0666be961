"""Running a study: many training configurations over seeds, resumable, here or in a process pool.

:func:`run_study` goes through its stages in order:

1. check the arguments, the size of the plan and the data, before any work;
2. claim the study's directory (:func:`droplab.rundir.claimed`: one study per directory, one
   process at a time) and open the store of runs (:mod:`.store`);
3. plan one job per (variant, seed) (:mod:`.jobs`), each keyed by a hash of its full
   configuration and data;
4. collect the jobs whose result is already in the store (so an interrupted study resumes, and
   studies run into one store share identical runs);
5. train the rest, here or on a pool of worker processes (:mod:`.backends`), storing each
   result as it comes;
6. analyse the runs (the study's ``analyze``) and write ``study.json``, the plots and ``summary.md``.

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
from ..interrupt import Interrupted, StopRequest, StudyInterrupted
from ..threads import usable_cores, use_threads
from ..verdicts import Claim
from .backends import run_here, run_pool
from .jobs import config_key, job_config
from .plan import MAX_RUNS, check_size, estimate_seconds, format_seconds
from .registry import Analysis, Study, Variant
from .results import Results
from .store import Recorder, collect, open_store

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
    seeds: int = 5,
    epochs: int | None = None,
    quick: bool = False,
    jobs: int = 1,
    store: str | os.PathLike | None = None,
    verify: bool = True,
    val_size: int = 5000,
    log: Callable[[str], None] = print,
    max_runs: int = MAX_RUNS,
) -> dict:
    """Run ``study`` (resuming what ``store`` already holds) and write its files to ``out``.

    ``jobs`` worker processes, each with one torch thread; with ``jobs=1`` (the default)
    the jobs run in this process with torch's threads, which on a 2-core machine is faster
    (``benchmarks/study_jobs.py`` measures both). ``store`` defaults to ``out/runs``.

    Returns:
        ``study.json``'s content.

    Raises:
        StudyArgumentError: ``seeds``, ``epochs`` or ``jobs`` not an integer >= 1.
        PlanError: more than ``max_runs`` runs.
        droplab.rundir.RunDirError: ``out`` holds another study or other files, or is in use.
    """
    # 1. before any work: the arguments, the plan's size (a typo is not a study), the data
    _check_arguments(seeds=seeds, epochs=epochs, jobs=jobs)
    variants = study.variants(quick)
    check_size(len(variants), seeds, max_runs)
    out = Path(out)
    data = load_fashion_mnist(data_dir, val_size=val_size, verify=verify)
    # 2. the study's directory, held until the study ends, and the store of runs
    with rundir.claimed(out, "study", study.name):
        store = open_store(Path(store) if store is not None else out / "runs")
        jobs, threads = _workers(jobs, log)
        # 3. one job per (variant, seed); 4. what the store already holds
        seed_list = list(range(seeds))
        plan = _plan(study, variants, seed_list, epochs, quick, data, threads, val_size)
        done, todo = collect(plan, store, log)
        _log_plan(study.name, plan, done, todo, store, jobs, data, log)
        # 5. train the rest
        start = time.perf_counter()
        _train(todo, done, data, store, jobs, threads, val_size, verify, log)
        wall = time.perf_counter() - start
        # 6. analyse and write the study's files
        analysis = study.analyze(Results(study, variants, seed_list, done))
        report = _report(study, quick, seed_list, variants, done, len(todo), wall, analysis)
        _write(out, report, analysis)
        return report


# --- the stages, in order -------------------------------------------------------------------


def _check_arguments(**values: int | None) -> None:
    """StudyArgumentError unless every value is an integer >= 1 (``epochs`` may be None: the study's)."""
    for name, value in values.items():
        if value is None and name == "epochs":  # the study's own epochs
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise StudyArgumentError(name, value)


def _workers(jobs: int, log: Callable[[str], None]) -> tuple[int, int]:
    """Worker processes (at most one per usable core) and torch threads per job."""
    if jobs > (cores := usable_cores()):  # more processes than cores only wait on each other
        log(f"note: {jobs} worker processes asked for, capped at the {cores} cores available")
        jobs = cores
    return jobs, (1 if jobs > 1 else use_threads(None)[0])


def _plan(
    study: Study, variants: list[Variant], seeds: list[int], epochs: int | None, quick: bool,
    data: FashionMNIST, threads: int, val_size: int,
) -> dict[tuple[str, int], tuple[str, dict]]:  # fmt: skip
    """Every job of the study, by (variant, seed): its key and its configuration."""
    plan = {}
    for v in variants:
        for s in seeds:
            job = job_config(study, v, s, epochs, quick, len(data.train_x))
            job["train"]["threads"] = threads
            job["train"]["val_size"] = val_size
            job["data"] = data.digest  # part of the key: a store never serves runs of other data
            plan[v.name, s] = (config_key(job), job)
    return plan


def _log_plan(name: str, plan: dict, done: dict, todo: dict, store: Path, jobs: int, data: FashionMNIST, log) -> None:
    """One line: the runs, how many the store holds, the workers, and about how long the rest take."""
    seconds, basis = estimate_seconds(
        (job for _, job in todo.values()), done.values(), len(data.train_x), len(data.val_x), len(data.test_x)
    )
    configurations, seeds = len({v for v, _ in plan}), len({s for _, s in plan})
    log(f"{name}: {configurations} configurations x {seeds} seeds = {len(plan)} runs "
        f"({len(done)} already in {store}), {min(jobs, max(len(todo), 1))} worker(s); "
        f"about {format_seconds(seconds)} of training to go ({basis})")  # fmt: skip


def _train(todo: dict, done: dict, data: FashionMNIST, store: Path, jobs: int, threads: int, val_size: int,
           verify: bool, log: Callable[[str], None]) -> None:  # fmt: skip
    """Train ``todo``, here or on ``jobs`` workers, storing each result (and adding it to ``done``) as it comes."""
    if not todo:
        return
    record, partial = Recorder(store, done, len(todo), log), store / "partial"
    # One job at a time here: a second signal stops at once (StopRequest raises Interrupted).
    # With workers, this process only records signals and the pool's driver decides what they mean.
    try:
        with StopRequest(at_once=jobs == 1) as stop:
            if jobs == 1:
                run_here(todo, data, partial, stop, record)
            else:
                run_pool(todo, data, val_size, verify, threads, jobs, partial, stop, record)
    except Interrupted as err:  # a second signal outside a job's training, even while a first stop unwinds
        raise StudyInterrupted(err.signum, f"{err} after {record.finished} of {len(todo)} runs") from None


def _report(study: Study, quick: bool, seeds: list[int], variants: list[Variant], done: dict, trained: int,
            wall: float, analysis: Analysis) -> dict:  # fmt: skip
    """``study.json``: the study, what its analysis found, and every run's record."""
    return {
        "study": study.name,
        "title": study.title,
        "question": study.question,
        "seeds": seeds,
        "quick": quick,
        "droplab": __version__,
        "wall_seconds": wall,
        "runs": len(done),
        "runs_trained": trained,
        "train_seconds": sum(r["summary"]["seconds"] for r in done.values()),  # all runs, whenever trained
        "claims": [_claim_record(c) for c in analysis.claims],
        "tables": [dataclasses.asdict(t) for t in analysis.tables],
        "notes": analysis.notes,
        "figures": [f"{stem}.png" for stem in analysis.figures],
        "variants": {v.name: _variant_record(v.name, seeds, done) for v in variants},
    }


def _claim_record(c: Claim) -> dict:
    """A claim as ``study.json`` keeps it: its figures, verdict and line."""
    i = c.interval
    return {"text": c.text, "mean": i.mean, "low": i.low, "high": i.high, "n": i.n, "unit": c.unit,
            "verdict": c.verdict, "line": c.line()}  # fmt: skip


def _variant_record(name: str, seeds: list[int], done: Mapping[tuple[str, int], Any]) -> dict:
    """A variant as ``study.json`` keeps it: its configuration, and per seed its run's key and record."""
    runs = [done[name, s] for s in seeds]
    return {
        "config": json.loads(json.dumps(runs[0]["job"])),
        "per_seed": [
            {"seed": s, "key": config_key(r["job"]), "summary": r["summary"], "history": r["history"],
             "probes": r["probes"]}
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
    lines += [f"{len(report['seeds'])} seeds; {report['runs']} runs ({report['train_seconds']:.0f} s of training; "
              f"{report['runs_trained']} trained in this call, {report['wall_seconds']:.0f} s)"
              + (" — quick setting" if report["quick"] else ""), ""]  # fmt: skip
    lines += ["```text", *[c.line() for c in analysis.claims], "```", ""]
    for t in analysis.tables:
        lines += [t.markdown(), ""]
    lines += [f"- {n}" for n in analysis.notes] + ([""] if analysis.notes else [])
    lines += [f"![{stem}]({stem}.png)" for stem in analysis.figures]
    return "\n".join(lines) + "\n"
