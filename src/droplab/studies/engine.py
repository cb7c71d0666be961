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

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import multiprocessing
import multiprocessing.connection
import multiprocessing.resource_tracker
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__, rundir
from ..checkpoint import CheckpointError
from ..checkpoint import load as load_checkpoint
from ..data import DataError, FashionMNIST, load_fashion_mnist
from ..ensemble import (
    MC_KS,
    accuracy_nll,
    accuracy_vs_confidence,
    expected_calibration_error,
    predict_mc,
    predict_scaled,
    reliability,
)
from ..interrupt import SIGNALS, Interrupted, StopRequest, StudyInterrupted, WorkerLost, signals_blocked
from ..stats import Interval, mean_interval, paired_interval, verdict
from ..threads import usable_cores, use_threads
from ..train import TrainConfig, fit
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
    """Set up a worker process (_ProcessPool): its stop request first, then torch and the data."""
    global _data, _stop
    # However many SIGINT/SIGTERM come, a worker only records them: its job checkpoints at the next
    # safe point and ends with StudyInterrupted. A Ctrl-C at a terminal reaches a worker directly and
    # again through its parent (_ProcessPool.halt); neither may kill it mid-job.
    _stop = StopRequest(at_once=False).__enter__()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # spawned with them blocked: one sent meanwhile counts now
    use_threads(threads)
    _data = load_fashion_mnist(data_dir, val_size=val_size, verify=verify)


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
    if job.get("data", data.digest) != data.digest:
        raise DataError(f"{data.source}: data digest {data.digest}, but this job is keyed to data {job['data']}")
    cfg = TrainConfig(**job["train"])
    state = None
    if checkpoint is not None and checkpoint.exists():
        try:
            state = load_checkpoint(checkpoint)
        except CheckpointError:
            checkpoint.unlink()  # damaged: the job starts over (its result will be the same)

    def train(resume):
        return fit(cfg, data, checkpoint=checkpoint, resume=resume, stop=stop, checkpoint_interval=CHECKPOINT_SECONDS)

    try:
        try:
            result = train(state)
        except CheckpointError:  # whole but unsound (checked before any step): start over
            if state is None:
                raise
            checkpoint.unlink(missing_ok=True)
            result = train(None)
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
PROBE_KEYS = {  # what each probe's record holds (a stored record lacking one is not served)
    "mc": ("scaled_acc", "scaled_nll", "scaled_ece", "scaled_reliability", "scaled_acc_vs_conf", "ks", "mc_ece",
           "mc_reliability", "mc_acc_vs_conf", *(f"mc{k}_{m}" for k in MC_KS for m in ("acc", "nll"))),
}  # fmt: skip
RECORD_CAP = 64 << 20  # a run's record is a few hundred kB


# --- the study ------------------------------------------------------------------------------


def _prepare_out(out: Path, study: str) -> None:
    """Use ``out`` for ``study``: a new or empty directory, or one this study wrote before."""
    try:
        _claim_out(out, study)
    except OSError as err:  # a name too long, a path through a file, an unreadable marker
        raise StudyError(f"cannot use {out} as the study's directory: {err.strerror or err}") from None


def _claim_out(out: Path, study: str) -> None:
    marker = out / ".droplab-study"
    if marker.exists():
        try:
            owner = rundir.read_regular(marker, 4096, "a study's marker").decode().strip()
        except ValueError as err:  # a FIFO, a device, not text
            raise StudyError(f"{marker} is not a droplab study marker ({err})") from None
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


# How jobs run, and how they stop. The contract, whatever runs the jobs (this process with
# --jobs 1, the process pool below, a cluster backend later): a job is given a stop request
# (anything with ``signum``); once that is set, the job writes its checkpoint at its next safe
# point and ends with StudyInterrupted (run_job, fit). The driver, _drive, on a stop request
# starts no more jobs, passes the request on to the jobs under way, stores what still
# finishes, waits for the others to checkpoint, then raises StudyInterrupted; on a second
# signal it abandons the jobs under way at once (their last checkpoints, written atomically,
# stay whole). A backend only starts jobs, reports how they ended, passes a stop on, abandons
# and closes: the methods of _ProcessPool.


class _RemoteTraceback(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)

    def __str__(self) -> str:
        return f"\n(in the worker process)\n{self.args[0]}"


def _rebuild(cls: type, args: tuple, state: dict) -> BaseException:
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class _Carried:
    """Pickles an exception whose ``__init__`` does not take its ``args`` back (Diverged, say)
    as its class, args and attributes; it unpickles as that exception."""

    def __init__(self, err: BaseException) -> None:
        self.err = err

    def __reduce__(self):
        return _rebuild, (type(self.err), self.err.args, dict(vars(self.err)))


def _portable(err: Exception):
    """What crosses to the parent for ``err``: itself, or carried; at worst a RuntimeError saying what it was."""
    for form in (err, _Carried(err)):
        try:
            pickle.loads(pickle.dumps(form))
            return form
        except Exception:
            pass
    return RuntimeError(f"{type(err).__name__}: {err}")


def _watch_parent() -> None:
    """In a worker: if the parent dies (killed outright), the job under way stops at its next safe point."""
    parent = multiprocessing.parent_process()

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        if _stop is not None and _stop.signum is None:
            _stop.signum = signal.SIGHUP

    if parent is not None:
        threading.Thread(target=watch, name="droplab-parent-watch", daemon=True).start()


def _worker_main(conn, data_dir: str, val_size: int, verify: bool, threads: int) -> None:
    """A worker process: jobs from ``conn``, one at a time, until None, or until the parent is gone."""
    try:
        _init_worker(data_dir, val_size, verify, threads)
        broken = None
    except Exception as err:  # reported as the first job's failure
        broken = err
    _watch_parent()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            break  # the parent is gone
        if task is None:
            break
        try:
            if _stop is not None and _stop.signum is not None:  # stopped before this job began: not begun
                raise StudyInterrupted(_stop.signum, "")
            if broken is not None:
                raise broken
            reply = ("done", run_job(task[0], None, task[1]))
        except StudyInterrupted as err:
            reply = ("stopped", err.signum)
        except Exception as err:
            reply = ("failed", (_portable(err), traceback.format_exc()))
        try:
            conn.send(reply)
        except OSError:
            break
    # Nothing to tear down (every file it wrote is whole and closed); the interpreter's own
    # teardown of torch and numba would take seconds, which the parent would wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@dataclass(eq=False)
class _Worker:
    proc: Any  # multiprocessing's SpawnProcess
    conn: Any  # this end of its pipe
    task: Any = None  # the job it runs (the driver's tag); None: idle
    halted: bool = False  # it was asked to stop
    gone: bool = False  # it ended, and was reaped


class _ProcessPool:
    """Spawned worker processes, each with a pipe of its own: no lock or queue is shared, so a
    worker that dies loses its own job only, and the pool knows which; a worker whose parent is
    gone ends after its job."""

    def __init__(self, n: int, initargs: tuple) -> None:
        self.n, self.initargs, self.workers = n, initargs, []

    def open(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # numba's and torch's thread pools do not survive fork
        # Started before the block, not by the first worker's start: starting it unblocks SIGINT/SIGTERM.
        multiprocessing.resource_tracker.ensure_running()
        with signals_blocked():  # a worker holds SIGINT/SIGTERM back until it has its StopRequest (_init_worker)
            for _ in range(self.n):
                conn, child = ctx.Pipe()
                proc = ctx.Process(target=_worker_main, args=(child, *self.initargs), name="droplab-worker")
                try:
                    proc.start()
                finally:
                    child.close()
                self.workers.append(_Worker(proc, conn))

    def idle(self) -> list[_Worker]:
        return [w for w in self.workers if w.task is None and not w.gone]

    def busy(self) -> bool:
        return any(w.task is not None for w in self.workers)

    def start(self, worker: _Worker, tag, job: Mapping[str, Any], checkpoint: Path) -> None:
        worker.task = tag
        with contextlib.suppress(OSError):  # it died: poll() reports the job lost
            worker.conn.send((job, checkpoint))

    def _reap(self, w: _Worker) -> None:
        w.proc.join()
        w.gone = True

    def poll(self, timeout: float) -> list[tuple[Any, str, Any]]:
        """How jobs ended meanwhile: (tag, "done", result), (tag, "stopped", signum),
        (tag, "failed", (error, traceback)), (tag, "lost", exit code); tag None: an idle worker died."""
        watch = {}
        for w in self.workers:
            if not w.gone:
                watch[w.conn], watch[w.proc.sentinel] = w, w
        ready = multiprocessing.connection.wait(list(watch), timeout) if watch else []
        events = []
        for w in dict.fromkeys(watch[r] for r in ready):
            reply = None
            if w.conn.poll():
                with contextlib.suppress(EOFError, OSError):  # died, maybe mid-message
                    reply = w.conn.recv()
            elif w.proc.is_alive():
                continue
            tag, w.task, w.halted = w.task, None, False
            if reply is None:
                self._reap(w)
                events.append((tag, "lost", w.proc.exitcode))
            else:
                events.append((tag, *reply))
        return events

    def halt(self) -> None:
        """The jobs under way stop at their next safe point: SIGTERM, which a worker only records."""
        for w in self.workers:
            if w.task is not None and not w.halted and not w.gone:
                w.halted = True
                w.proc.terminate()

    def abandon(self) -> list:
        """Kill every worker now (a second signal); the tags of the jobs they ran."""
        for w in self.workers:
            if not w.gone:
                w.proc.kill()
        tags = []
        for w in self.workers:
            if not w.gone:
                self._reap(w)
            if w.task is not None:
                tags.append(w.task)
                w.task = None
        return tags

    def close(self, stop: StopRequest) -> None:
        """End every worker: a job still under way stops at its next safe point first (what it
        sends then is dropped); a second signal meanwhile kills them."""
        self.halt()
        for w in self.workers:
            if not w.gone:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
        open_conns = {w.conn for w in self.workers if not w.gone}
        while not all(w.gone for w in self.workers):
            if stop.count >= 2:
                self.abandon()
                break
            alive = [w for w in self.workers if not w.gone]
            ready = multiprocessing.connection.wait([w.proc.sentinel for w in alive] + list(open_conns), 0.2)
            for w in alive:
                if w.conn in ready and w.conn in open_conns:
                    try:
                        w.conn.recv()  # a reply nobody waits for: read, so that the worker is not stuck writing it
                    except (EOFError, OSError):
                        open_conns.discard(w.conn)
                if w.proc.sentinel in ready:
                    self._reap(w)
        for w in self.workers:
            w.conn.close()
            w.proc.close()


def _job_name(tag) -> str:
    return f"{tag[0]}, seed {tag[1]}"


def _died(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {_signame(-code)}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
    return f"exited unexpectedly (status {code})"


def _drive(pool: _ProcessPool, todo: dict, partial: Path, stop: StopRequest, store_result) -> None:
    """Run ``todo`` on ``pool`` (see above for the contract); store each result as it comes."""
    queue = list(todo.items())
    signum, failure, lost, abandoned, finished = None, None, [], [], 0
    while True:
        if signum is None:
            signum = stop.signum
        ending = signum is not None or failure is not None or bool(lost)
        if ending and stop.count >= 2:
            abandoned = pool.abandon()
            break
        if ending:
            pool.halt()
        else:
            for worker in pool.idle()[: len(queue)]:
                tag, (key, job) = queue.pop(0)
                pool.start(worker, tag, job, partial / f"{key}.pt")
        if not pool.busy() and (ending or not queue):
            break
        for tag, how, what in pool.poll(0.2):
            if how == "done":
                key = todo[tag][0]
                store_result(tag, key, what)
                (partial / f"{key}.pt").unlink(missing_ok=True)
                finished += 1
            elif how == "stopped":  # a signal to this worker alone stops the whole study too
                signum = signum or what
            elif how == "failed":
                failure = failure or what
            else:
                lost.append((tag, what))
    for tag in abandoned + [tag for tag, _ in lost if tag is not None]:  # killed, perhaps mid-write
        for stale in partial.glob(f".{todo[tag][0]}.pt.tmp-*"):
            stale.unlink(missing_ok=True)
    if failure is not None:
        err, remote = failure
        raise err from _RemoteTraceback(remote)
    done = f"{finished} of {len(todo)} runs"
    if lost:
        tag, code = lost[0]
        what = f"with {_job_name(tag)} (it goes on from its last checkpoint)" if tag is not None else "between runs"
        more = f"; {len(lost) - 1} more worker(s) died" if len(lost) > 1 else ""
        raise WorkerLost(-code if code is not None and code < 0 else signal.SIGKILL,
                         f"a worker process {_died(code)} {what}{more}; the study stopped after {done}")  # fmt: skip
    if abandoned:
        names = "; ".join(_job_name(t) for t in abandoned)
        raise StudyInterrupted(signum, f"interrupted by {_signame(signum)} and stopped at once by a second signal "
                                       f"after {done} ({names} go on from their last checkpoints)")  # fmt: skip
    if signum is not None:
        raise StudyInterrupted(signum, f"interrupted by {_signame(signum)} after {done}")


def _run_pool(todo, data, val_size, verify, threads, jobs, partial, stop, store_result) -> None:
    """The jobs on a pool of spawned workers, stopped by a signal as _drive says."""
    if stop.signum is not None:
        raise StudyInterrupted(stop.signum, f"interrupted by {_signame(stop.signum)} before any run began")
    pool = _ProcessPool(min(jobs, len(todo)), (data.source, val_size, verify, threads))
    try:
        pool.open()
        _drive(pool, todo, partial, stop, store_result)
    finally:
        pool.close(stop)


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
    _prepare_out(out, study.name)
    with _study_lock(out):
        try:
            store.mkdir(parents=True, exist_ok=True)
            (store / "partial").mkdir(exist_ok=True)  # checkpoints of jobs under way
        except OSError as err:
            raise StudyError(f"cannot use {store} as the store of runs: {err.strerror or err}") from None

        if jobs > (cores := usable_cores()):  # more processes than cores only wait on each other
            log(f"note: --jobs {jobs} capped at the {cores} cores available")
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
                    _run_pool(todo, data, val_size, verify, threads, jobs, partial, stop, store_result)
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
