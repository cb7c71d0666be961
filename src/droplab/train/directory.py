"""A run directory's lifecycle: claimed, trained in with checkpoints, written, resumed.

A run directory holds ``config.json`` (written first: the configuration, the data it trains
on and the command), ``checkpoint.pt`` while the run goes on, and when it has finished
``metrics.csv``, ``model.pt``, ``curves.png`` and ``summary.json`` (written last). An
interrupted or diverged run's ``summary.json`` says so, and where it stopped.

(The module is not called ``run``: :func:`run` is what ``droplab.train`` exports under that name.)
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from pathlib import Path

from .. import atomic, plots, rundir
from ..checkpoint import FILENAME as CHECKPOINT
from ..checkpoint import CheckpointError
from ..checkpoint import load as load_checkpoint
from ..data import DataError, FashionMNIST
from ..interrupt import Interrupted, StopRequest
from ..progress import TrainProgress
from .config import RUN_ONLY, TrainConfig, batches_per_epoch
from .loop import Diverged, RunResult, fit
from .metrics import METRICS
from .resources import check_disk, check_run, training_pool_size

__all__ = ["DataMismatch", "run", "resume", "run_config", "run_data", "check_same_data", "write_run"]


class DataMismatch(DataError):
    """The run in ``directory`` started on data with digest ``started`` (None: unknown, an older
    droplab) from ``started_source``; the data given now, from ``source``, has ``digest``."""

    def __init__(self, directory: Path, started: str | None, started_source: str, digest: str, source: str) -> None:
        super().__init__(directory, started, started_source, digest, source)
        self.directory, self.started, self.started_source = directory, started, started_source
        self.digest, self.source = digest, source

    def __str__(self) -> str:
        began = f"data with digest {self.started}" if self.started else "data of unknown digest (an older droplab)"
        return (f"{self.directory} was started on {began} from {self.started_source}; the data given now, from "
                f"{self.source}, has digest {self.digest}: a run goes on only on the data it started on")  # fmt: skip


def run(
    cfg: TrainConfig,
    data: FashionMNIST,
    out: str | Path | None = None,
    runs_root: str | Path = "runs",
    label: str | None = None,
) -> RunResult:
    """Train and write a run directory: ``config.json`` first, checkpoints as it goes, the
    results when done.

    Args:
        out: the run directory (default: a fresh ``runs_root/<model>-<timestamp>``), claimed
            before training starts: an unusable, already used or too full directory is an error
            before any work.
        label: what the progress bar calls the run (default: the model's name).

    Returns:
        the :class:`RunResult`, with the directory it was written to.

    Raises:
        Interrupted: SIGINT/SIGTERM stopped it at a safe point (:func:`resume` goes on).
        Diverged: a non-finite loss or gradient (the last good checkpoint stays).
    """
    check_run(cfg, data)
    with rundir.held(rundir.claim_new(out, runs_root, cfg.model), undo=["config.json"]) as directory:
        check_disk(directory, cfg, cfg.train_size or training_pool_size(cfg, data))
        atomic.write_json(directory / "config.json", {**cfg.to_dict(), "data": data.source, "data_sha256": data.digest,
                                                      "command": " ".join(sys.argv)})  # fmt: skip
        return _train_in(directory, cfg, data, None, label)


def resume(directory: str | Path, data: FashionMNIST, label: str | None = None, **changes) -> RunResult:
    """Go on with the run in ``directory`` from its last checkpoint (or from the start, when it
    was stopped before the first): the result is bit for bit the uninterrupted run's.

    Args:
        changes: run-only fields (:data:`~droplab.train.config.RUN_ONLY`) to go on with in place
            of the run's own, such as ``threads`` (None: the thread count the run recorded) or
            ``checkpoint_every``; the other fields would change what the run computes.

    Raises:
        ValueError: ``changes`` names another field than a run-only one (a :class:`ConfigError`
            for a bad value).
        DataMismatch: ``data`` is not the data the run started on.
        RunDirError: ``directory`` is not a run's, another process holds it, or its run has finished.
    """
    if computed := [name for name in changes if name not in RUN_ONLY]:
        raise ValueError(f"a resumed run goes on with its own configuration: {', '.join(computed)} cannot change "
                         f"(only {', '.join(RUN_ONLY)} can)")  # fmt: skip
    directory = Path(directory)
    cfg = run_config(directory)
    check_same_data(directory, data)
    cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None}).validate()
    with rundir.held(rundir.lock_dir(directory)):
        if (directory / "summary.json").is_file() and _status(directory / "summary.json") == "finished":
            raise rundir.RunFinished(directory)
        state = load_checkpoint(directory / CHECKPOINT) if (directory / CHECKPOINT).exists() else None
        check_disk(directory, cfg, cfg.train_size or training_pool_size(cfg, data))
        return _train_in(directory, cfg, data, state, label)


def _train_in(
    directory: Path, cfg: TrainConfig, data: FashionMNIST, state: dict | None, label: str | None
) -> RunResult:
    """Train in a claimed run directory, checkpointing; record an interruption or a divergence,
    and raise it again with the directory (where the run can go on from)."""
    batches = batches_per_epoch(cfg, cfg.train_size or training_pool_size(cfg, data))
    done = state.get("step") if state and type(state.get("step")) is int else 0  # checked by fit
    checkpoint = directory / CHECKPOINT
    with StopRequest() as stop, TrainProgress(cfg.epochs, batches, label or cfg.model, done=done) as progress:
        try:
            result = fit(cfg, data, on_batch=progress.batch, on_epoch=progress.epoch, checkpoint=checkpoint,
                         resume=state, stop=stop)  # fmt: skip
        except Interrupted as err:
            atomic.write_json(directory / "summary.json", {
                "status": "interrupted", "signal": signal.Signals(err.signum).name, "where": err.where,
                "last_checkpoint": str(checkpoint) if checkpoint.exists() else None,
            })  # fmt: skip
            raise Interrupted(err.signum, err.where, directory).with_traceback(err.__traceback__) from None
        except Diverged as err:
            kept = checkpoint.exists()
            atomic.write_json(directory / "summary.json", {
                "status": "diverged", "epoch": err.epoch, "step": err.step, "reason": err.what,
                "last_checkpoint": str(checkpoint) if kept else None,
            })  # fmt: skip
            again = Diverged(err.epoch, err.step, err.what, err.lr, directory if kept else None)
            raise again.with_traceback(err.__traceback__) from None
    write_run(directory, cfg, result)
    return dataclasses.replace(result, directory=directory)


def write_run(directory: Path, cfg: TrainConfig, result: RunResult) -> None:
    """Write a finished run's files into its directory, each atomically, ``summary.json`` last."""
    atomic.write_csv(directory / "metrics.csv", METRICS, [{k: h[k] for k in METRICS} for h in result.history])
    atomic.save_weights(directory / "model.pt", result.model.state_dict())
    fig = plots.run_curves(result.history, title=f"{cfg.model}, seed {cfg.seed}")
    atomic.save_figure(directory / "curves.png", fig)
    atomic.write_json(directory / "summary.json", {"status": "finished", **result.summary})
    (directory / CHECKPOINT).unlink(missing_ok=True)  # model.pt has the weights; the run is done


def _run_record(directory: Path) -> dict:
    """``config.json`` of the run in ``directory``: its configuration and the data it trained on."""
    try:
        is_run = (directory / ".droplab").is_file() and (directory / "config.json").is_file()
    except OSError as err:  # a name too long, a loop of links
        raise rundir.DirectoryUnusable(directory, err.strerror or str(err), "a run directory") from None
    if not is_run:
        raise rundir.NotADroplabDirectory(directory, "run")
    try:
        record = json.loads(atomic.read_regular(directory / "config.json", 1 << 24, "a run's config.json"))
    except (OSError, ValueError, RecursionError) as err:
        raise CheckpointError(f"{directory / 'config.json'} cannot be read: {err}") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{directory / 'config.json'} holds a {type(record).__name__}, expected a run's record")
    return record


def run_config(directory: str | Path) -> TrainConfig:
    """The configuration of the run in ``directory`` (its ``config.json``), checked."""
    directory = Path(directory)
    fields = _run_record(directory)
    try:
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in fields.items() if k in known}).validate()
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{directory / 'config.json'} is damaged or from another version: {err}") from None


def run_data(directory: str | Path) -> tuple[str | None, str | None]:
    """The data directory and digest the run in ``directory`` recorded (None where it did not)."""
    record = _run_record(Path(directory))
    source, digest = record.get("data"), record.get("data_sha256")
    return (source if isinstance(source, str) else None), (digest if isinstance(digest, str) else None)


def check_same_data(directory: str | Path, data: FashionMNIST) -> None:
    """Refuse to go on with the run in ``directory`` on other data than it started on (:class:`DataMismatch`)."""
    directory = Path(directory)
    record = _run_record(directory)
    if record.get("data_sha256") != data.digest:
        raise DataMismatch(directory, record.get("data_sha256"), record.get("data", "?"), data.digest, data.source)


def _status(summary: Path) -> str | None:
    try:
        record = json.loads(atomic.read_regular(summary, 1 << 24, "a run's summary.json"))
    except (OSError, ValueError, RecursionError):
        return None  # damaged: not a finished run's (it is written last, atomically)
    return record.get("status") if isinstance(record, dict) else None
