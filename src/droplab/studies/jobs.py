"""One job of a study: its configuration and key, and how it is trained and probed.

A job is one (variant, seed) of a study: a full :class:`~droplab.train.TrainConfig`, the probes
to run after training (found by name in :data:`~droplab.studies.registry.PROBES`, where the
study that asks for one registers it), and the digest of the data it trains on. Its key, a hash
of all of that, names its result in a store, so a store serves a job only the result of that
very job. :func:`run_job` trains one (in this process, or in a Ray worker), going on from its
checkpoint if a stopped study left one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoint import CheckpointError
from ..checkpoint import load as load_checkpoint
from ..data import DataError, FashionMNIST
from ..interrupt import Interrupted, StopRequest, StudyInterrupted
from ..train import Diverged, TrainConfig, fit, with_defaults
from .records import pack_correct
from .registry import PROBES

if TYPE_CHECKING:
    from .registry import Study, Variant

__all__ = ["FORMAT", "job_config", "canonical", "config_key", "run_job"]

FORMAT = 1  # bump when a result file's meaning changes: old results are then not reused


def job_config(study: Study, variant: Variant, seed: int, epochs: int | None, quick: bool, n_train: int) -> dict:
    """The full configuration of one job, as stored and hashed; ValueError for a probe no study registered."""
    if unknown := [p for p in variant.probes if p not in PROBES]:
        raise ValueError(f"variant {variant.name!r}: unknown probe {unknown[0]!r}, expected one of {', '.join(PROBES)}")
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


_DEFAULTS = with_defaults({})


def canonical(job: Mapping[str, Any]) -> dict:
    """A job as it is compared and hashed: JSON values, ``TrainConfig`` fields at their
    default left out (a field it lacks is at its default: :func:`~droplab.train.with_defaults`).
    So adding a field with a default keeps every stored result valid; changing a default's
    meaning needs a new ``FORMAT``."""
    job = json.loads(json.dumps(job, default=list))
    job["train"] = {k: v for k, v in with_defaults(job["train"]).items() if k not in _DEFAULTS or _DEFAULTS[k] != v}
    return job


def config_key(job: Mapping[str, Any]) -> str:
    """A stable hash of a job's full configuration (canonical sorted JSON, SHA-256, 16 hex digits)."""
    text = json.dumps(canonical(job), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


CHECKPOINT_SECONDS = 30.0  # a job's checkpoints: at most this often (and when stopped)


def run_job(
    job: Mapping[str, Any],
    data: FashionMNIST,
    checkpoint: Path | None = None,
    stop: StopRequest | None = None,
) -> dict:
    """Train one job and run its probes; return what is stored (JSON-able): the job, the run's summary
    and history, the probes' results, and ``per_image``: ``test_correct``, whether the run's model
    classified each test image right (:func:`~droplab.studies.records.pack_correct`).

    A run that diverges is stored as such: ``{"job", "diverged": {"epoch", "step", "what"}}``.

    With ``checkpoint``, the job checkpoints after an epoch at most every
    ``CHECKPOINT_SECONDS`` (and when a signal stops it) and, if that file holds a
    usable checkpoint of this job (a study killed earlier), goes on from it bit for bit.
    """
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
    except Diverged as err:  # a result too: a learning rate of the tuning grid this variant cannot take
        return {"job": job, "diverged": {"epoch": err.epoch, "step": err.step, "what": err.what}}
    summary = {k: v for k, v in result.summary.items() if k not in ("data",)}
    probes = {name: PROBES[name].run(result.model, data, cfg.seed) for name in job["probes"]}
    per_image = {"test_correct": pack_correct(result.test_correct)}
    return {"job": job, "summary": summary, "history": result.history, "probes": probes, "per_image": per_image}
