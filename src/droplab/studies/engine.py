"""Running a study: many training configurations over seeds, resumable, here or in a process pool.

A :class:`Study` is a list of :class:`Variant` s (overrides of :class:`~droplab.train.TrainConfig`,
plus post-training probes) and an ``analyze`` function. :func:`run_study` expands it into
one job per (variant, seed) (:mod:`.jobs`), keys each job by a hash of its full configuration and data, skips the
jobs whose result is already in the store (so an interrupted study resumes, and studies run
into one store share identical runs), runs the rest here or in a pool of worker processes
(:mod:`.backends`), then
analyses and writes ``study.json``, the plots and ``summary.md``.

Every result file is written atomically, so a killed study leaves finished jobs whole and
unfinished ones absent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__, rundir
from ..data import load_fashion_mnist
from ..interrupt import Interrupted, StopRequest, StudyInterrupted
from ..stats import Interval, mean_interval, paired_interval
from ..threads import usable_cores, use_threads
from ..verdicts import Claim, Table, format_interval
from .backends import run_pool
from .jobs import FORMAT, PROBE_KEYS, PROBES, canonical, config_key, job_config, run_job  # noqa: F401 (FORMAT: API)
from .plan import MAX_RUNS, check_size, estimate_seconds, format_seconds
from .records import record_problem

__all__ = [
    "Variant",
    "Study",
    "Claim",
    "Table",
    "Analysis",
    "Results",
    "StudyError",
    "config_key",
    "run_study",
    "PROBES",
]



class StudyError(ValueError):
    """A study that cannot run as asked (a bad option, an output directory of another study)."""


def _signame(signum: int) -> str:
    return signal.Signals(signum).name


@dataclass(frozen=True)
class Variant:
    """One configuration of a study: a name, overrides of ``TrainConfig``, probes."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    probes: tuple[str, ...] = ()
    epochs: int | None = None  # None: the study's epochs


@dataclass
class Analysis:
    claims: list[Claim]
    tables: list[Table]
    figures: dict[str, Any]  # file stem -> matplotlib Figure
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    question: str
    variants: Callable[[bool], list[Variant]]  # quick -> the variants
    analyze: Callable[[Results], Analysis]
    epochs: int = 10
    base: Mapping[str, Any] = field(default_factory=dict)  # overrides common to all variants


class Results:
    """The finished jobs of a study: per variant, per seed, the stored result."""

    def __init__(self, study: Study, variants: list[Variant], seeds: list[int], jobs: dict) -> None:
        self.study, self.variants, self.seeds, self._jobs = study, variants, seeds, jobs

    def get(self, variant: str, seed: int) -> dict:
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
        return [[h[key] for h in self._jobs[variant, s]["history"]] for s in self.seeds]

    def interval(self, variant: str, key: str, scale: float = 1.0) -> Interval:
        return mean_interval(self.values(variant, key, scale))

    def paired(self, a: str, b: str, key: str, scale: float = 1.0) -> Interval:
        """95% interval of ``a - b`` over seeds."""
        return paired_interval(self.values(a, key, scale), self.values(b, key, scale))

    def claim(self, text: str, a: str, b: str, key: str = "val_acc", expect_positive: bool = True) -> Claim:
        """A claim that ``a`` beats ``b`` on ``key`` (accuracies in pp; others as they are)."""
        acc = key.endswith("acc")
        return Claim(text, self.paired(a, b, key, 100.0 if acc else 1.0), "pp" if acc else "", expect_positive)


# --- the study ------------------------------------------------------------------------------


RECORD_CAP = 64 << 20  # a run's record is a few hundred kB


def _load_result(path: Path, job: Mapping[str, Any], log: Callable[[str], None]) -> dict | None:
    """A stored result for ``job``, or None if absent; one that is damaged, for another job or
    holds figures no run produces is set aside (renamed ``*.rejected``, never served) and logged."""
    try:
        stored = json.loads(rundir.read_regular(path, RECORD_CAP, "a run's JSON record"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as err:  # a FIFO, a device, not JSON, nested too deep
        problem = f"cannot be read ({type(err).__name__}: {str(err)[:200]})"
    else:
        problem = record_problem(stored, job, canonical, PROBE_KEYS)
    if problem is None:
        return {**stored, "job": json.loads(json.dumps(job))}  # the job as asked: equal, with every field
    rejected = path.with_name(path.name + ".rejected")
    try:
        os.replace(path, rejected)
        log(f"  stored result {path} set aside as {rejected.name}: {problem}; the run is trained again")
    except OSError as err:
        log(f"  stored result {path} not used: {problem} (and it cannot be set aside: {err.strerror})")
    return None


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
    (``benchmarks/study_jobs.py`` measures both). Returns ``study.json``'s content.
    """
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise StudyError(f"--seeds {seeds!r}: invalid, expected an integer >= 1")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise StudyError(f"--epochs {epochs!r}: invalid, expected an integer >= 1")
    if not isinstance(jobs, int) or jobs < 1:
        raise StudyError(f"--jobs {jobs!r}: invalid, expected an integer >= 1")
    variants = study.variants(quick)
    check_size(len(variants), seeds, max_runs)  # before any work: a typo is not a study
    out = Path(out)
    store = Path(store) if store is not None else out / "runs"
    data = load_fashion_mnist(data_dir, val_size=val_size, verify=verify)  # checks the data before any work
    with rundir.claimed(out, "study", study.name):
        try:
            store.mkdir(parents=True, exist_ok=True)
            (store / "partial").mkdir(exist_ok=True)  # checkpoints of jobs under way
        except OSError as err:
            raise StudyError(f"cannot use {store} as the store of runs: {err.strerror or err}") from None

        if jobs > (cores := usable_cores()):  # more processes than cores only wait on each other
            log(f"note: {jobs} worker processes asked for, capped at the {cores} cores available")
            jobs = cores
        threads = 1 if jobs > 1 else use_threads(None)[0]
        seed_list = list(range(seeds))
        todo, done = {}, {}
        for v in variants:
            for s in seed_list:
                job = job_config(study, v, s, epochs, quick, len(data.train_x))
                job["train"]["threads"] = threads
                job["train"]["val_size"] = val_size
                job["data"] = data.digest  # part of the key: a store never serves runs of other data
                key = config_key(job)
                found = _load_result(store / f"{key}.json", job, log)
                if found is not None:
                    done[v.name, s] = found
                else:
                    todo[v.name, s] = (key, job)
        seconds, basis = estimate_seconds(
            (job for _, job in todo.values()), done.values(), len(data.train_x), len(data.val_x), len(data.test_x)
        )
        log(f"{study.name}: {len(variants)} configurations x {seeds} seeds = {len(done) + len(todo)} runs "
            f"({len(done)} already in {store}), {min(jobs, max(len(todo), 1))} worker(s); "
            f"about {format_seconds(seconds)} of training to go ({basis})")  # fmt: skip

        start = time.perf_counter()
        finished = 0

        def store_result(name_seed, key, result) -> None:
            nonlocal finished
            rundir.write_json(store / f"{key}.json", result)
            result = json.loads((store / f"{key}.json").read_text())  # as a resumed study will see it
            done[name_seed] = result
            finished += 1
            s = result["summary"]
            log(f"  [{finished}/{len(todo)}] {name_seed[0]}, seed {name_seed[1]}: val acc {100 * s['val_acc']:.2f}%, "
                f"{s['seconds']:.1f} s")  # fmt: skip

        partial = store / "partial"  # checkpoints of jobs under way: a killed study goes on from them
        partial.mkdir(exist_ok=True)
        # One job at a time here: a second signal stops at once (StopRequest raises Interrupted).
        # With workers, this process only records signals and _drive decides what they mean.
        try:
            with StopRequest(at_once=jobs == 1) as stop:
                if todo and jobs == 1:
                    for name_seed, (key, job) in todo.items():
                        store_result(name_seed, key, run_job(job, data, partial / f"{key}.pt", stop))
                        (partial / f"{key}.pt").unlink(missing_ok=True)
                        if stop.signum is not None and finished < len(todo):
                            why = f"interrupted by {_signame(stop.signum)} after {finished} of {len(todo)} runs"
                            raise StudyInterrupted(stop.signum, why)
                elif todo:
                    run_pool(todo, data, val_size, verify, threads, jobs, partial, stop, store_result)
        except Interrupted as err:  # a second signal outside a job's training, even while a first stop unwinds
            raise StudyInterrupted(err.signum, f"{err} after {finished} of {len(todo)} runs") from None
        wall = time.perf_counter() - start

        results = Results(study, variants, seed_list, done)
        analysis = study.analyze(results)
        report = {
            "study": study.name,
            "title": study.title,
            "question": study.question,
            "seeds": seed_list,
            "quick": quick,
            "droplab": __version__,
            "wall_seconds": wall,
            "runs": len(done),
            "runs_trained": len(todo),
            "train_seconds": sum(r["summary"]["seconds"] for r in done.values()),  # all runs, whenever trained
            "claims": [
                {
                    "text": c.text,
                    "mean": c.interval.mean,
                    "low": c.interval.low,
                    "high": c.interval.high,
                    "n": c.interval.n,
                    "unit": c.unit,
                    "verdict": c.verdict,
                    "line": c.line(),
                }
                for c in analysis.claims
            ],  # fmt: skip
            "tables": [dataclasses.asdict(t) for t in analysis.tables],
            "notes": analysis.notes,
            "figures": [f"{stem}.png" for stem in analysis.figures],
            "variants": {
                v.name: {
                    "config": json.loads(json.dumps(done[v.name, 0]["job"])),
                    "per_seed": [
                        {
                            "seed": s,
                            "key": config_key(done[v.name, s]["job"]),
                            "summary": done[v.name, s]["summary"],
                            "history": done[v.name, s]["history"],
                            "probes": done[v.name, s]["probes"],
                        }
                        for s in seed_list
                    ],
                }
                for v in variants
            },  # fmt: skip
        }
        for stem, fig in analysis.figures.items():
            rundir.save_figure(out / f"{stem}.png", fig)
        rundir.write_json(out / "study.json", report)
        rundir.write_text(out / "summary.md", summary_markdown(report, analysis))
        return report


def summary_markdown(report: Mapping[str, Any], analysis: Analysis) -> str:
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


def variants_table(results: Results, title: str, columns: Sequence[tuple[str, str, float, int]]) -> Table:
    """Mean ± 95% half-width per variant for ``columns`` = (key, heading, scale, digits)."""
    rows = [
        [v.name] + [format_interval(results.interval(v.name, key, scale), d) for key, _, scale, d in columns]
        for v in results.variants
    ]
    return Table(title, ["variant"] + [h for _, h, _, _ in columns], rows)
