"""Running a study: many training configurations over seeds, in a process pool, resumable.

A :class:`Study` is a list of :class:`Variant` s (overrides of :class:`~droplab.train.TrainConfig`,
plus post-training probes) and an ``analyze`` function. :func:`run_study` expands it into
one job per (variant, seed), keys each job by a hash of its full configuration, skips the
jobs whose result is already in the store (so an interrupted study resumes, and studies run
into one store share identical runs), runs the rest in a pool of worker processes, then
analyses and writes ``study.json``, the plots and ``summary.md``.

Every result file is written atomically, so a killed study leaves finished jobs whole and
unfinished ones absent.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__, rundir
from ..checkpoint import CheckpointError
from ..checkpoint import load as load_checkpoint
from ..data import FashionMNIST, load_fashion_mnist
from ..ensemble import (
    MC_KS,
    accuracy_nll,
    accuracy_vs_confidence,
    expected_calibration_error,
    predict_mc,
    predict_scaled,
    reliability,
)
from ..interrupt import Interrupted, StopRequest, StudyInterrupted
from ..stats import Interval, mean_interval, paired_interval, verdict
from ..train import TrainConfig, fit

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

FORMAT = 1  # bump when a result file's meaning changes: old results are then not reused
PROBES = ("mc",)


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


@dataclass(frozen=True)
class Claim:
    """One verdict line: ``claim: <text> — <estimate> [low, high], n seeds — <verdict>``."""

    text: str
    interval: Interval
    unit: str = "pp"  # "pp": a difference of accuracies in percentage points; "": as is
    expect_positive: bool = True

    @property
    def verdict(self) -> str:
        return verdict(self.interval, self.expect_positive)

    def line(self) -> str:
        i, digits = self.interval, (2 if self.unit == "pp" else 4)
        unit = " pp" if self.unit == "pp" else ""
        bounds = "n/a" if math.isnan(i.low) else f"{i.low:+.{digits}f}, {i.high:+.{digits}f}"
        seeds = f"{i.n} seed{'s' if i.n != 1 else ''}"
        return f"claim: {self.text} — {i.mean:+.{digits}f}{unit} [{bounds}], {seeds} — {self.verdict}"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.headers) + " |", "|" + "---|" * len(self.headers)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


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


# --- jobs -------------------------------------------------------------------------------


def job_config(study: Study, variant: Variant, seed: int, epochs: int | None, quick: bool, n_train: int) -> dict:
    """The full configuration of one job, as stored and hashed."""
    fields = {**study.base, **variant.overrides}
    cfg = TrainConfig(**fields)
    cfg.seed = seed
    cfg.epochs = epochs if epochs is not None else (variant.epochs or study.epochs)
    if quick:  # a tiny setting for tests and CI: two epochs on at most 2,000 images, batches of 64
        cfg.epochs = 2 if epochs is None else epochs
        cfg.train_size = min(cfg.train_size or 2000, 2000, n_train)
        if cfg.train_size >= n_train:
            cfg.train_size = 0
        cfg.eval_train_size = min(cfg.eval_train_size or 1000, 1000)
        cfg.batch_size = min(cfg.batch_size, 64, cfg.train_size or n_train)
    cfg.validate()
    return {"train": cfg.to_dict(), "probes": list(variant.probes), "format": FORMAT}


_DEFAULTS = json.loads(json.dumps(TrainConfig().to_dict()))


def canonical(job: Mapping[str, Any]) -> dict:
    """A job as it is compared and hashed: JSON values, ``TrainConfig`` fields at their
    default left out. So adding a field with a default keeps every stored result valid;
    changing a default's meaning needs a new ``FORMAT``."""
    job = json.loads(json.dumps(job, default=list))
    job["train"] = {k: v for k, v in job["train"].items() if k not in _DEFAULTS or _DEFAULTS[k] != v}
    return job


def config_key(job: Mapping[str, Any]) -> str:
    """A stable hash of a job's full configuration (canonical sorted JSON, SHA-256, 16 hex digits)."""
    text = json.dumps(canonical(job), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


CHECKPOINT_SECONDS = 30.0  # a job's checkpoints: at most this often (and when stopped)
_data: FashionMNIST | None = None
_stop: StopRequest | None = None


def _init_worker(data_dir: str, val_size: int, verify: bool, threads: int) -> None:
    global _data, _stop
    torch.set_num_threads(threads)
    _data = load_fashion_mnist(data_dir, val_size=val_size, verify=verify)
    _stop = StopRequest().__enter__()  # a worker stops at a safe point too, checkpointing its job


def run_job(
    job: Mapping[str, Any],
    data: FashionMNIST | None = None,
    checkpoint: Path | None = None,
    stop: StopRequest | None = None,
) -> dict:
    """Train one job and run its probes; return what is stored (JSON-able).

    With ``checkpoint``, the job checkpoints after an epoch at most every
    ``CHECKPOINT_SECONDS`` (and when a signal stops it) and, if that file holds a
    usable checkpoint of this job (a study killed earlier), goes on from it bit for bit.
    """
    data = data if data is not None else _data
    stop = stop if stop is not None else _stop
    cfg = TrainConfig(**job["train"])
    state = None
    if checkpoint is not None and checkpoint.exists():
        try:
            state = load_checkpoint(checkpoint)
        except CheckpointError:
            checkpoint.unlink()  # damaged: the job starts over (its result will be the same)
    try:
        result = fit(cfg, data, checkpoint=checkpoint, resume=state, stop=stop, checkpoint_interval=CHECKPOINT_SECONDS)
    except Interrupted as err:
        raise StudyInterrupted(err.signum, str(err)) from None
    summary = {k: v for k, v in result.summary.items() if k not in ("data",)}
    probes = {name: PROBE_FUNCTIONS[name](result.model, data, cfg.seed) for name in job["probes"]}
    return {"job": job, "summary": summary, "history": result.history, "probes": probes}


def _probe_mc(model, data: FashionMNIST, seed: int) -> dict:
    """Weight scaling against Monte-Carlo averages of k thinned networks, on the test set."""
    x, y = data.test_x, data.test_y
    scaled = predict_scaled(model, x)
    mc = predict_mc(model, x, MC_KS, seed=seed)
    acc_s, nll_s = accuracy_nll(scaled, y)
    out = {
        "scaled_acc": acc_s,
        "scaled_nll": nll_s,
        "scaled_ece": expected_calibration_error(scaled, y),
        "scaled_reliability": reliability(scaled, y),
        "scaled_acc_vs_conf": accuracy_vs_confidence(scaled, y),
        "ks": list(MC_KS),
    }
    for k, probs in mc.items():
        acc, nll = accuracy_nll(probs, y)
        out[f"mc{k}_acc"], out[f"mc{k}_nll"] = acc, nll
    top = mc[max(MC_KS)]
    out["mc_ece"] = expected_calibration_error(top, y)
    out["mc_reliability"] = reliability(top, y)
    out["mc_acc_vs_conf"] = accuracy_vs_confidence(top, y)
    return out


PROBE_FUNCTIONS = {"mc": _probe_mc}


# --- the study ------------------------------------------------------------------------------


def _prepare_out(out: Path, study: str) -> None:
    """Use ``out`` for ``study``: a new or empty directory, or one this study wrote before."""
    marker = out / ".droplab-study"
    if marker.exists():
        owner = marker.read_text().strip()
        if owner != study:
            raise StudyError(f"{out} holds results of study {owner!r}, not {study!r}: choose another --out")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StudyError(f"{out} exists and is not a study directory of droplab: choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        rundir.write_text(marker, study + "\n")
    except OSError as err:
        raise StudyError(f"cannot write to {out}: {err.strerror or err}") from None


@contextlib.contextmanager
def _study_lock(out: Path):
    """Hold ``out`` for this process while the study runs: a second study into it is refused."""
    fd = os.open(out / ".droplab-study", os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StudyError(f"{out} is in use by another droplab study: wait, or choose another --out") from None
        yield
    finally:
        os.close(fd)


def _run_pool(todo, data, val_size, verify, threads, jobs, partial, stop, store_result) -> None:
    """The jobs on a pool of spawned workers; on a signal, the workers checkpoint and stop too."""
    ctx = multiprocessing.get_context("spawn")  # numba's and torch's thread pools do not survive fork
    with cf.ProcessPoolExecutor(
        min(jobs, len(todo)), mp_context=ctx, initializer=_init_worker,
        initargs=(data.source, val_size, verify, threads),
    ) as pool:  # fmt: skip
        futures = {
            pool.submit(run_job, job, None, partial / f"{key}.pt"): (name_seed, key)
            for name_seed, (key, job) in todo.items()
        }
        pending, signalled = set(futures), False
        while pending:
            finished, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                name_seed, key = futures[fut]
                if fut.cancelled():
                    continue
                try:
                    result = fut.result()
                except StudyInterrupted:
                    continue
                store_result(name_seed, key, result)
                (partial / f"{key}.pt").unlink(missing_ok=True)
            if stop.signum is not None and not signalled:
                signalled = True
                for fut in pending:
                    fut.cancel()
                for proc in list(getattr(pool, "_processes", {}).values()):  # the jobs under way
                    proc.terminate()  # SIGTERM: the worker checkpoints after its current step
        if stop.signum is not None:
            raise StudyInterrupted(stop.signum, f"interrupted by {_signame(stop.signum)}")


def _load_result(path: Path, job: Mapping[str, Any]) -> dict | None:
    """A stored result for ``job``, or None if absent or not for this exact job."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or not isinstance(stored.get("job"), dict) or "train" not in stored["job"]:
        return None
    return stored if canonical(stored["job"]) == canonical(job) else None


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
    out = Path(out)
    store = Path(store) if store is not None else out / "runs"
    data = load_fashion_mnist(data_dir, val_size=val_size, verify=verify)  # checks the data before any work
    _prepare_out(out, study.name)
    with _study_lock(out):
        store.mkdir(parents=True, exist_ok=True)

        threads = 1 if jobs > 1 else torch.get_num_threads()
        variants = study.variants(quick)
        seed_list = list(range(seeds))
        todo, done = {}, {}
        for v in variants:
            for s in seed_list:
                job = job_config(study, v, s, epochs, quick, len(data.train_x))
                job["train"]["threads"] = threads
                job["train"]["val_size"] = val_size
                key = config_key(job)
                found = _load_result(store / f"{key}.json", job)
                if found is not None:
                    done[v.name, s] = found
                else:
                    todo[v.name, s] = (key, job)
        log(f"{study.name}: {len(variants)} configurations x {seeds} seeds = {len(done) + len(todo)} runs "
            f"({len(done)} already in {store}), {min(jobs, max(len(todo), 1))} worker(s)")  # fmt: skip

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
        with StopRequest() as stop:
            if todo and jobs == 1:
                for name_seed, (key, job) in todo.items():
                    store_result(name_seed, key, run_job(job, data, partial / f"{key}.pt", stop))
                    (partial / f"{key}.pt").unlink(missing_ok=True)
                    if stop.signum is not None and finished < len(todo):
                        why = f"interrupted by {_signame(stop.signum)} after {finished} of {len(todo)} runs"
                        raise StudyInterrupted(stop.signum, why)
            elif todo:
                _run_pool(todo, data, val_size, verify, threads, jobs, partial, stop, store_result)
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


def format_interval(i: Interval, digits: int = 2) -> str:
    """``mean ± half-width`` of a 95% interval (just the mean for one seed)."""
    if math.isnan(i.low):
        return f"{i.mean:.{digits}f}"
    return f"{i.mean:.{digits}f} ± {(i.high - i.low) / 2:.{digits}f}"


def variants_table(results: Results, title: str, columns: Sequence[tuple[str, str, float, int]]) -> Table:
    """Mean ± 95% half-width per variant for ``columns`` = (key, heading, scale, digits)."""
    rows = [
        [v.name] + [format_interval(results.interval(v.name, key, scale), d) for key, _, scale, d in columns]
        for v in results.variants
    ]
    return Table(title, ["variant"] + [h for _, h, _, _ in columns], rows)
