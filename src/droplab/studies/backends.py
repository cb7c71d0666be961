"""Where a study's jobs run: this process (:class:`Local`, the default), or a Ray cluster
(:class:`~droplab.studies.ray_backend.RayBackend`).

A backend only decides where a job runs: the job's configuration, its key, its result and the
store are the same whichever runs it (:mod:`.jobs`, :mod:`.store`). Its interface:

- ``threads()``: the torch threads a run gets (part of the job's configuration, and so of its
  key: a run's numbers depend on them, bit for bit);
- ``describe()``: where the jobs run, in words;
- ``connect()``: reach where the jobs run (before a study writes anything: an error there loses nothing);
- ``run(todo, data, partial, stop, store_result, tally)``: train every job of ``todo`` (tag ->
  (key, job)), call ``store_result(tag, key, record)`` as each finishes, keep ``tally`` (a
  :class:`Tally`) up to date, and on a stop request (``stop.signum`` set) end with
  :class:`~droplab.interrupt.StudyInterrupted` once no job is under way;
- ``stops_at_once``: whether a second signal may stop it at once (:class:`~droplab.interrupt.StopRequest`);
- ``close()``.

(``droplab study --jobs N``, a pool of worker processes with one thread each, was retired for
the Ray backend: on a 2-core AMD EPYC its 2 workers took 1.05x the time of one process with 2
threads for eight 5-epoch runs and 1.34x for four 2-epoch runs, where a local Ray cluster's 2
workers took 0.86x; ``benchmarks/study_scaling.py`` measures Ray's workers.)
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import FashionMNIST
from ..interrupt import Interrupted, StopRequest, StudyInterrupted
from ..threads import use_threads
from ..train.metrics import versions
from . import jobs
from .store import Recorder

__all__ = ["Local", "Tally", "BackendError", "run_here", "train"]


class BackendError(ValueError):
    """A backend's setting ``field`` is ``value``: not ``expected``."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        super().__init__(field, value, expected)
        self.field, self.value, self.expected = field, value, expected

    def __str__(self) -> str:
        return f"{self.field} = {self.value!r} is invalid: expected {self.expected}"


def signame(signum: int) -> str:
    return signal.Signals(signum).name


class RemoteTraceback(Exception):
    """A worker's traceback, as text: the cause of the error that failed its job, raised again in the driver."""

    def __init__(self, text: str) -> None:
        super().__init__(text)

    def __str__(self) -> str:
        return f"\n(in the worker)\n{self.args[0]}"


def portable(err: Exception) -> Exception:
    """What crosses to the driver for ``err``: itself, where it pickles (every droplab error does:
    each passes its data, its constructor's arguments, on as its ``args``); a foreign one that does
    not (an exception whose ``__init__`` does not take its ``args`` back) as a RuntimeError saying what it was."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")
    return err


@dataclass
class Tally:
    """A study's jobs so far, for a progress display: ``total`` planned (it grows when a grid
    widens), ``finished`` (found in the store or trained), ``trained`` (by this call), ``running``
    and ``retried`` (submitted again after their worker died). ``show`` is called with it after
    each change."""

    total: int = 0
    finished: int = 0
    trained: int = 0
    running: int = 0
    retried: int = 0
    show: Callable[[Tally], None] | None = field(default=None, repr=False)

    def update(self, **changes: int) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        if self.show is not None:
            self.show(self)


def machine_record(backend: str) -> dict:
    """Where and how a run was trained, kept beside its result (``machine``: not part of its numbers)."""
    return {"backend": backend, "host": socket.gethostname(), "pid": os.getpid(), "threads": torch.get_num_threads(),
            "versions": versions()}


def run_here(todo, data, partial: Path, stop: StopRequest, store_result, tally: Tally | None = None) -> None:
    """The jobs one after another in this process; a stop ends the study once the job under way
    has stopped (checkpointed, StudyInterrupted from the job) or finished."""
    tally = tally or Tally()
    for finished, (tag, (key, job)) in enumerate(todo.items(), 1):
        tally.update(running=1)
        result = jobs.run_job(job, data, partial / f"{key}.pt", stop)
        store_result(tag, key, {**result, "machine": machine_record("local")})
        (partial / f"{key}.pt").unlink(missing_ok=True)
        tally.update(running=0)
        if stop.signum is not None and finished < len(todo):
            why = f"interrupted by {signame(stop.signum)} after {finished} of {len(todo)} runs"
            raise StudyInterrupted(stop.signum, why)


class Local:
    """This process, one job at a time, with ``threads`` torch threads (None: torch's, capped at
    the usable cores): on a 2-core machine the fastest way to train short runs (2 epochs; for
    5-epoch runs a local Ray cluster's 2 workers were faster: ``benchmarks/study_scaling.py``). A job
    checkpoints to the store's ``partial/`` as it goes, so a stopped study goes on from there.

    Raises:
        BackendError: ``threads`` is not None or an integer >= 1.
    """

    stops_at_once = True  # a second signal stops the job under way at once (its checkpoint stays whole)

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise BackendError("cpus_per_run", threads, "an integer >= 1")
        self._threads = threads

    def threads(self) -> int:
        return use_threads(self._threads)[0]

    @property
    def default_threads(self) -> bool:
        """Whether it runs with torch's default threads (no ``threads`` given)."""
        return self._threads is None

    def connect(self) -> None:
        pass  # nothing to reach

    def describe(self) -> str:
        used, note = use_threads(self._threads)
        return f"this process, {used} thread(s)" + (f" ({note})" if note else "")

    def run(self, todo, data, partial: Path, stop: StopRequest, store_result, tally: Tally) -> None:
        run_here(todo, data, partial, stop, store_result, tally)

    def close(self) -> None:
        pass


def train(todo: dict, done: dict, data: FashionMNIST, store: Path, backend, tally: Tally,
           log: Callable[[str], None]) -> None:  # fmt: skip
    """Train ``todo`` (tag -> (key, job), what :func:`~.store.collect` left) on ``backend``,
    storing each result in ``store`` (and adding it to ``done``) as it comes."""
    if not todo:
        return
    record, partial = Recorder(store, done, len(todo), log, tally), store / "partial"
    # Here, one job at a time: a second signal stops at once (StopRequest raises Interrupted). On a
    # cluster, every signal is only recorded and the backend cancels the jobs under way.
    try:
        with StopRequest(at_once=backend.stops_at_once) as stop:
            backend.run(todo, data, partial, stop, record, tally)
    except Interrupted as err:  # a second signal outside a job's training, even while a first stop unwinds
        raise StudyInterrupted(err.signum, f"{err} after {record.finished} of {len(todo)} runs") from None
