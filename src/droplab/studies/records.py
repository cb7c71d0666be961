"""A stored run result, checked before a study serves it.

A study's store is a directory of ``<key>.json`` files, one finished job each, that anyone
who shares the directory can write. Before a record is used in place of training, it must be
for the very job asked (its configuration and the data's digest, see ``canonical``), and its
numbers must be what a run can produce: every figure a finite number, accuracies in [0, 1],
losses and seconds >= 0. :func:`record_problem` says what is wrong with one, or ``None``.

A record may hold ``per_image`` (records written before it existed do not): ``test_correct``,
whether the run's model classified each test image right, as the base64 text of the bits
packed eight to a byte (:func:`pack_correct`, :func:`unpack_correct`).
"""

from __future__ import annotations

import base64
import binascii
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..train.config import evaluated_epochs
from ..train.metrics import HISTORY_KEYS  # a stored history is the run's own

__all__ = ["SUMMARY_KEYS", "record_problem", "pack_correct", "unpack_correct"]

# what every stored summary holds: a number each (the analyses read them)
SUMMARY_KEYS = (
    "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "train_loss_eval", "gap",
    "seconds", "epochs", "seed", "threads",
)  # fmt: skip


def pack_correct(correct: np.ndarray) -> str:
    """Per-image results (bool, one per image) as text: the bits packed eight to a byte, in base64.

    Examples::

        >>> text = pack_correct(np.array([True, False, True, True, False, False, False, False, True]))
        >>> text
        'sIA='
        >>> unpack_correct(text, 9).astype(int).tolist()
        [1, 0, 1, 1, 0, 0, 0, 0, 1]
    """
    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool))).decode("ascii")


def unpack_correct(text: str, n: int) -> np.ndarray:
    """The ``n`` per-image results :func:`pack_correct` wrote as ``text``, as a bool array.

    Raises:
        ValueError: ``text`` is not base64, or does not hold exactly ``n`` images' bits (the
            ``ceil(n / 8)`` bytes packing writes, its padding bits zero).
    """
    raw = _decoded(text)
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"per-image results hold {8 * len(raw)} bits: expected {n} test images "
                         f"({(n + 7) // 8} bytes)")  # fmt: skip
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
    if bits[n:].any():
        raise ValueError(f"per-image results hold bits set beyond the {n} test images")
    return bits[:n].astype(bool)


def _decoded(text: Any) -> bytes:
    """The bytes of base64 ``text``; ValueError for anything else."""
    if not isinstance(text, str):
        raise ValueError(f"per-image results are a {type(text).__name__}: expected base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("per-image results are not valid base64 text") from None


def _per_image_problem(per_image: Any, summary: Mapping, n_test: int | None) -> str | None:
    """What is wrong with a record's ``per_image``, or None: checked against the data's ``n_test``
    test images and the summary's ``test_acc`` where the caller gives it, else only as base64."""
    if not isinstance(per_image, dict) or "test_correct" not in per_image:
        return "per_image is not per-image results (expected test_correct, base64 text)"
    try:
        if n_test is None:
            _decoded(per_image["test_correct"])
            return None
        correct = unpack_correct(per_image["test_correct"], n_test)
    except ValueError as err:
        return f"per_image.test_correct: {err}"
    if correct.mean() != summary["test_acc"]:
        return f"per_image.test_correct: {correct.mean()!r} right, but summary.test_acc is {summary['test_acc']!r}"
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _number_problem(path: str, v: Any) -> str | None:
    """What is wrong with a figure at ``path`` (accuracies in [0, 1]; losses, seconds, counts >= 0)."""
    try:
        finite = _is_number(v) and math.isfinite(v)
    except OverflowError:  # an integer of hundreds of digits
        finite = False
    if not finite:
        shown = repr(v) if len(repr(v)) < 40 else repr(v)[:30] + "…"
        return f"{path} is {shown}: expected a finite number"
    name = path.rsplit(".", 1)[-1]
    if name.endswith("acc") and not 0 <= v <= 1:
        return f"{path} is {v!r}: expected an accuracy in [0, 1]"
    if name != "gap" and (name.endswith("loss") or name.endswith("nll") or name in ("seconds", "epochs", "threads")) \
            and v < 0:  # fmt: skip
        return f"{path} is {v!r}: expected a number >= 0"
    return None


def _walk(path: str, value: Any) -> str | None:
    """The first bad figure anywhere in ``value`` (probes: nested dicts and lists of numbers)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if (problem := _walk(f"{path}.{k}", v)) is not None:
                return problem
        return None
    if isinstance(value, list):
        for i, v in enumerate(value):
            if (problem := _walk(f"{path}[{i}]", v)) is not None:
                return problem
        return None
    if value is None or isinstance(value, str):
        return None  # "not measured" (JSON has no NaN), and names
    return _number_problem(path, value)


def _diverged_problem(stored: dict, job: Mapping[str, Any], canonical) -> str | None:
    """What is wrong with the record of a run that diverged, or None."""
    d = stored["diverged"]
    keys = set(stored) - {"machine"}  # where it ran: kept beside any record
    if keys != {"job", "diverged"} or not isinstance(d, dict) or set(d) != {"epoch", "step", "what"}:
        return "diverged: expected exactly a job and its epoch, step and what (and where it ran)"
    if not isinstance(stored["job"], dict) or canonical(stored["job"]) != canonical(job):
        return "recorded for another job (its configuration or data differ from the key's)"
    if not isinstance(d["what"], str) or not all(_is_number(d[k]) and d[k] >= 0 for k in ("epoch", "step")):
        return "diverged: its epoch and step must be numbers >= 0, what a string"
    return None


def record_problem(
    stored: Any, job: Mapping[str, Any], canonical, probe_keys: Mapping[str, Iterable[str]] | None = None,
    n_test: int | None = None,
) -> str | None:
    """Why ``stored`` cannot stand for a run of ``job`` (``canonical``: how jobs are compared), or None.

    The record must hold one metrics row per epoch the job evaluates (its ``epochs`` and
    ``eval_every``), the job's seed and epochs in its summary, and for each probe of the job
    the figures ``probe_keys`` names. Its ``per_image``, where it has one, must be valid base64
    and, given the data's ``n_test`` test images, hold exactly their bits, with the summary's
    ``test_acc`` as their mean.

    Examples::

        >>> same = lambda job: job
        >>> record_problem([], {}, same)
        'not a record (a list)'
        >>> summary, history = dict.fromkeys(SUMMARY_KEYS, 0.5), [dict.fromkeys(HISTORY_KEYS, 1)]
        >>> record_problem({"job": {"train": {}}, "summary": summary, "history": history, "probes": {}},
        ...                {"train": {}}, same) is None
        True
        >>> record_problem({"job": {"train": {}}, "summary": {**summary, "val_acc": float("nan")}, "history": history,
        ...                 "probes": {}}, {"train": {}}, same)
        'summary.val_acc is nan: expected a finite number'
    """
    if not isinstance(stored, dict):
        return f"not a record (a {type(stored).__name__})"
    if not isinstance(stored.get("machine", {}), dict):
        return "machine (where it ran) is not a mapping"
    if "diverged" in stored:  # a run that diverged: its job, and where
        return _diverged_problem(stored, job, canonical)
    missing = [k for k in ("job", "summary", "history", "probes") if k not in stored]
    if missing:
        return f"no {', '.join(missing)}"
    if not isinstance(stored["job"], dict) or not isinstance(stored["job"].get("train"), dict):
        return "job is not a job's configuration"
    if canonical(stored["job"]) != canonical(job):
        return "recorded for another job (its configuration or data differ from the key's)"
    summary, history, probes = stored["summary"], stored["history"], stored["probes"]
    if not isinstance(summary, dict) or (absent := [k for k in SUMMARY_KEYS if k not in summary]):
        return f"summary lacks {', '.join(absent)}" if isinstance(summary, dict) else "summary is not a mapping"
    for k in SUMMARY_KEYS:
        if (problem := _number_problem(f"summary.{k}", summary[k])) is not None:
            return problem
    train = job["train"]
    for k in ("seed", "epochs"):
        if k in train and summary[k] != train[k]:
            return f"summary.{k} is {summary[k]!r}: the job's is {train[k]!r}"
    if not isinstance(history, list) or not history:
        return "history is not a list of metric rows"
    epochs = evaluated_epochs(train.get("epochs", 0), train.get("eval_every", 1))
    if "epochs" in train and len(history) != len(epochs):
        return f"history has {len(history)} rows: the job evaluates {len(epochs)} epochs"
    for i, row in enumerate(history):
        if not isinstance(row, dict) or any(k not in row for k in HISTORY_KEYS):
            return f"history[{i}] is not a metrics row (expected {', '.join(HISTORY_KEYS)})"
        if "epochs" in train and row["epoch"] != epochs[i]:
            return f"history[{i}].epoch is {row['epoch']!r}: expected {epochs[i]}"
        for k, v in row.items():
            if (problem := _number_problem(f"history[{i}].{k}", v)) is not None:
                return problem
    if "per_image" in stored and (problem := _per_image_problem(stored["per_image"], summary, n_test)) is not None:
        return problem
    if not isinstance(probes, dict) or set(probes) != set(job.get("probes", ())):
        return f"probes are not those of the job ({', '.join(job.get('probes', ())) or 'none'})"
    for name, keys in (probe_keys or {}).items():
        if name in probes and (not isinstance(probes[name], dict) or (absent := set(keys) - set(probes[name]))):
            return f"probes.{name} lacks {', '.join(sorted(absent))}" if isinstance(probes[name], dict) else \
                f"probes.{name} is not a mapping"  # fmt: skip
    return _walk("probes", probes)
