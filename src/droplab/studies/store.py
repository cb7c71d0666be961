"""The store of runs: one ``<key>.json`` record per finished job, shared by the studies run into it.

A job's key (:func:`~droplab.studies.jobs.config_key`) names its record, so a study finds the
runs it needs that any study stored before, and trains only the others. The store is treated as
shared and untrusted: a record is served only when it is whole and for the very job asked
(:mod:`.records`); one that is not is set aside (renamed ``*.rejected``) and the run trained
again. ``partial/`` holds the checkpoints of the jobs under way, from which a stopped study goes on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import atomic, rundir
from .jobs import canonical
from .records import record_problem
from .registry import PROBES

__all__ = ["RECORD_CAP", "open_store", "collect", "load_result", "Recorder"]

RECORD_CAP = 64 << 20  # a run's record is a few hundred kB


def open_store(store: Path) -> Path:
    """Create ``store`` and its ``partial/`` if need be; :class:`~droplab.rundir.DirectoryUnusable` if it cannot be."""
    try:
        store.mkdir(parents=True, exist_ok=True)
        (store / "partial").mkdir(exist_ok=True)
    except OSError as err:
        raise rundir.DirectoryUnusable(store, err.strerror or str(err), "the store of runs") from None
    return store


def collect(plan: Mapping[Any, tuple[str, dict]], store: Path, log: Callable[[str], None],
            n_test: int | None = None) -> tuple[dict, dict]:  # fmt: skip
    """Split ``plan`` (tag -> (key, job)) into the results ``store`` holds (tag -> record) and
    the jobs still to train (tag -> (key, job)), both in the plan's order. ``n_test``: the data's
    test images, which a record's per-image results must cover."""
    done, todo = {}, {}
    for tag, (key, job) in plan.items():
        found = load_result(store / f"{key}.json", job, log, n_test)
        if found is not None:
            done[tag] = found
        else:
            todo[tag] = (key, job)
    return done, todo


def load_result(path: Path, job: Mapping[str, Any], log: Callable[[str], None],
                n_test: int | None = None) -> dict | None:  # fmt: skip
    """A stored result for ``job``, or None if absent; one that is damaged, for another job or
    holds figures no run produces is set aside (renamed ``*.rejected``, never served) and logged."""
    try:
        stored = json.loads(atomic.read_regular(path, RECORD_CAP, "a run's JSON record"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as err:  # a FIFO, a device, not JSON, nested too deep
        problem = f"cannot be read ({type(err).__name__}: {str(err)[:200]})"
    else:
        problem = record_problem(stored, job, canonical, {name: p.keys for name, p in PROBES.items()}, n_test)
    if problem is None:
        return {**stored, "job": json.loads(json.dumps(job))}  # the job as asked: equal, with every field
    rejected = path.with_name(path.name + ".rejected")
    try:
        os.replace(path, rejected)
        log(f"  stored result {path} set aside as {rejected.name}: {problem}; the run is trained again")
    except OSError as err:
        log(f"  stored result {path} not used: {problem} (and it cannot be set aside: {err.strerror})")
    return None


class Recorder:
    """Stores each finished run in ``store`` and in ``done`` (as a resumed study will read it), and
    logs it: ``[3/8] plain, seed 1: val acc 87.10%, 4.2 s``. ``finished`` counts them."""

    def __init__(self, store: Path, done: dict, total: int, log: Callable[[str], None], tally=None) -> None:
        self.store, self.done, self.total, self.log, self.finished = store, done, total, log, 0
        self.tally = tally  # a backends.Tally: its count of finished runs goes up with each

    def __call__(self, tag: tuple[str, int], key: str, result: Mapping[str, Any]) -> None:
        path = atomic.write_json(self.store / f"{key}.json", result)
        self.done[tag] = json.loads(path.read_text())
        self.finished += 1
        if self.tally is not None:
            self.tally.update(finished=self.tally.finished + 1, trained=self.tally.trained + 1)
        if "diverged" in self.done[tag]:
            self.log(f"  [{self.finished}/{self.total}] {tag[0]}, seed {tag[1]}: diverged "
                     f"({self.done[tag]['diverged']['what']})")  # fmt: skip
            return
        s = self.done[tag]["summary"]
        self.log(f"  [{self.finished}/{self.total}] {tag[0]}, seed {tag[1]}: val acc {100 * s['val_acc']:.2f}%, "
                 f"{s['seconds']:.1f} s")  # fmt: skip
