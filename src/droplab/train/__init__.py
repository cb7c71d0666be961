"""Training: the fit loop, per-epoch metrics, and the files of a run directory.

The lecture's run is the default ``TrainConfig``: two hidden layers of 256, dropout 0.5
after each, SGD with learning rate 0.1, batch 256, 10 epochs (as d2l runs it).

Per epoch: the mean training loss with dropout active (over the minibatches, as d2l plots
it), then accuracy and loss on the training set in eval mode, and on the validation split
(every ``eval_every`` epochs and after the last, when long runs should not pay for them all).
The test set is evaluated once, at the end. The same seed and thread count give the same
numbers bit for bit: the model's initial weights and the dropout masks come from torch's
global generator seeded with ``seed``; the minibatch order from a generator of its own.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__, plots, rundir
from ..checkpoint import FILENAME as CHECKPOINT
from ..checkpoint import CheckpointError, rng_state, set_rng_state
from ..checkpoint import load as load_checkpoint
from ..checkpoint import save as save_checkpoint_file
from ..data import DataError, FashionMNIST
from ..interrupt import Interrupted, StopRequest
from ..memory import available_bytes, run_bytes
from ..models import build_model
from ..noise import max_norm_
from ..progress import TrainProgress
from ..threads import use_threads
from .config import (
    AUGMENT_STREAM,
    OPTIMIZERS,
    SCHEDULES,
    SHUFFLE_STREAM,
    SUBSET_STREAM,
    ConfigError,
    TrainConfig,
    batches_per_epoch,
    check_batch_size,
    evaluated_epochs,
    generator,
    make_optimizer,
    make_scheduler,
)  # fmt: skip
from .state import check_state

__all__ = [
    "OPTIMIZERS", "SCHEDULES", "ConfigError", "Diverged", "TrainConfig", "RunResult", "fit", "evaluate", "run",
    "resume", "METRICS",
]  # fmt: skip

METRICS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]
PROBE_SIZE = 2000  # validation images the activation variances are measured on


@dataclass
class RunResult:
    history: list[dict]
    summary: dict
    model: nn.Module
    directory: Path | None = None


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 8192):
    """Mean cross-entropy and accuracy of ``model`` in eval mode (its mode is restored)."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        logits = model(x[i : i + batch_size])
        target = y[i : i + batch_size]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(dim=1) == target).sum().item()
    model.train(was_training)
    return loss_sum / len(x), correct / len(x)


def shift_images(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each 28x28 image of ``x`` (N, 784) by its own random (dy, dx) in [-k, k]^2,
    filling with zeros (the background): the usual translation augmentation."""
    n = len(x)
    side = 28
    padded = F.pad(x.view(n, side, side), (k, k, k, k))
    dy, dx = torch.randint(-k, k + 1, (2, n), generator=generator)
    base = torch.arange(side)
    rows = (base[None, :] + k - dy[:, None])[:, :, None]
    cols = (base[None, :] + k - dx[:, None])[:, None, :]
    return padded[torch.arange(n)[:, None, None], rows, cols].reshape(n, side * side)


@torch.no_grad()
def activation_variances(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Variance of each hidden layer's activations on ``x``: per unit over the examples, then
    averaged over the units. ``act_var_<i>``: the ReLU outputs of hidden layer i in eval mode;
    ``act_var_train_<i>``: what the next layer receives in training mode (after dropout or
    other noise). Training-mode noise is drawn on a forked generator, so measuring does not
    change the run; batch-norm layers stay in eval mode for it.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)][1:]  # those after a hidden layer
    seen: dict[str, torch.Tensor] = {}
    hooks = [r.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(f"relu{k}", o)) for k, r in enumerate(relus)]
    for k, lin in enumerate(linears):
        hooks.append(lin.register_forward_pre_hook(lambda m, i, k=k: seen.__setitem__(f"in{k}", i[0])))
    was_training = model.training
    out: dict[str, float] = {}
    try:
        model.eval()
        model(x)
        for k in range(len(relus)):
            out[f"act_var_{k + 1}"] = seen[f"relu{k}"].var(dim=0).mean().item()
        with torch.random.fork_rng(devices=[]):
            model.train()
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
            model(x)
        for k in range(len(relus)):
            out[f"act_var_train_{k + 1}"] = seen[f"in{k}"].var(dim=0).mean().item()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return out


class Diverged(RuntimeError):
    """A non-finite loss or gradient: the run stops before the step that would spread it."""

    def __init__(self, epoch: int, step: int, what: str, lr: float) -> None:
        self.epoch, self.step, self.what, self.lr = epoch, step, what, lr
        super().__init__(
            f"training diverged at epoch {epoch}, step {step}: {what}; "
            f"try a smaller learning rate than {lr:g} (for example {lr / 10:g})"
        )


class DataMismatch(DataError):
    """A run resumed on other data than it started on."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, permissions); the previous one, if any, is intact."""


def _nonfinite_gradient(model: nn.Module) -> str | None:
    """The name of the first parameter whose gradient holds a NaN or an infinity, else None."""
    named = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
    if not named:
        return None
    worst = torch.stack([g.detach().abs().amax() for _, g in named])  # NaN and inf survive amax
    if bool(torch.isfinite(worst).all()):
        return None
    bad = next(i for i in range(len(named)) if not torch.isfinite(worst[i]))
    return f"gradient of {named[bad][0]} is {worst[bad].item()}"


def fit(
    cfg: TrainConfig,
    data: FashionMNIST,
    on_batch: Callable[[float], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    checkpoint: str | Path | None = None,
    resume: dict | None = None,
    stop: StopRequest | None = None,
    checkpoint_interval: float = 0.0,
) -> RunResult:
    """Train the model ``cfg`` describes on ``data``; return per-epoch history and a summary.

    Args:
        checkpoint: a file to write a checkpoint to after every epoch (and every
            ``cfg.checkpoint_every`` steps), atomically.
        resume: a checkpoint's contents (:func:`droplab.checkpoint.load`) to go on from; the
            run then ends bit for bit as the uninterrupted one would (same threads).
        checkpoint_interval: seconds; the end-of-epoch checkpoint is skipped when the last
            one is younger (for runs of many short epochs, where writing would dominate).
        stop: a :class:`~droplab.interrupt.StopRequest`; when it has seen a signal, the run
            writes a checkpoint after the current step and raises ``Interrupted``.

    Raises:
        Diverged: a non-finite loss or gradient, before the optimizer step that would use it.
    """
    cfg.validate()
    check_batch_size(cfg, data)
    check_memory(cfg, data)
    # bit for bit needs the thread count of the first part, when the caller does not set one
    recorded = (resume or {}).get("threads")  # checked with the rest of the checkpoint below
    recorded = recorded if type(recorded) is int and recorded >= 1 else None
    threads, threads_note = use_threads(cfg.threads if cfg.threads is not None else recorded)
    train_x, train_y = data.train_x, data.train_y
    if cfg.train_size:
        subset = generator(cfg.seed, SUBSET_STREAM)
        pick = torch.randperm(len(train_x), generator=subset)[: cfg.train_size]
        train_x, train_y = train_x[pick], train_y[pick]
    n = len(train_x)
    used = n - n % cfg.batch_size if cfg.drop_last else n  # images an epoch trains on
    eval_n = min(cfg.eval_train_size or n, n)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.hidden, cfg.dropout, cfg.dropout_impl, cfg.noise, cfg.norm)
    optimizer = make_optimizer(cfg, model.parameters())
    scheduler = make_scheduler(cfg, optimizer, cfg.epochs * batches_per_epoch(cfg, n))
    constrained = [m for m in model.modules() if isinstance(m, nn.Linear)] if cfg.max_norm > 0 else []
    shuffle = generator(cfg.seed, SHUFFLE_STREAM)
    augment = generator(cfg.seed, AUGMENT_STREAM)
    # where the run stands: the next epoch and batch, that epoch's order and running loss
    first_epoch, next_i, order, loss_sum, step, history, elapsed = 1, 0, None, 0.0, 0, [], 0.0
    if resume is not None:
        evaluated = evaluated_epochs(cfg.epochs, cfg.eval_every)
        check_state(resume, cfg.to_dict(), n_train=n, batches=batches_per_epoch(cfg, n), eval_epochs=evaluated,
                    model=model, optimizer=optimizer, scheduler=scheduler, data_digest=data.digest)  # fmt: skip
        try:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(resume["scheduler"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(f"checkpoint does not fit the configured model: {err}") from None
        shuffle.set_state(resume["shuffle"])
        augment.set_state(resume["augment"])
        set_rng_state(resume["rng"])
        first_epoch, next_i, order = resume["epoch"], resume["next_i"], resume["order"]
        loss_sum, step, history, elapsed = resume["loss_sum"], resume["step"], resume["history"], resume["seconds"]

    last_saved = -math.inf

    def save_checkpoint(epoch: int, i: int, order_now, loss_now: float, seconds: float, force: bool = True) -> None:
        nonlocal last_saved
        if checkpoint is None or (not force and time.perf_counter() - last_saved < checkpoint_interval):
            return
        last_saved = time.perf_counter()
        state = {
            "config": cfg.to_dict(), "epoch": epoch, "next_i": i, "order": order_now, "loss_sum": loss_now,
            "step": step, "history": history, "seconds": seconds,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "shuffle": shuffle.get_state(), "augment": augment.get_state(), "rng": rng_state(),
            "threads": threads, "data_sha256": data.digest,
        }  # fmt: skip
        had_one = Path(checkpoint).exists()
        try:
            save_checkpoint_file(checkpoint, state)
        except OSError as err:
            why = err.strerror or str(err)
            kept = "the previous one is intact" if had_one else "there was none before it: the run starts over"
            raise CheckpointWriteError(err.errno, f"cannot write {checkpoint}: {why}; {kept}") from None

    start = time.perf_counter() - elapsed
    for epoch in range(first_epoch, cfg.epochs + 1):
        model.train()
        if order is None:
            order, next_i, loss_sum = torch.randperm(n, generator=shuffle), 0, 0.0
        for i in range(next_i, used, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            x = shift_images(train_x[idx], cfg.augment, augment) if cfg.augment else train_x[idx]
            loss = F.cross_entropy(model(x), train_y[idx])
            batch_loss = loss.item()
            if not math.isfinite(batch_loss):
                raise Diverged(epoch, step + 1, f"loss = {batch_loss}", cfg.lr)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if (bad := _nonfinite_gradient(model)) is not None:
                raise Diverged(epoch, step + 1, bad, cfg.lr)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            for linear in constrained:
                max_norm_(linear, cfg.max_norm)
            step += 1
            loss_sum += batch_loss * len(idx)
            if on_batch is not None:
                on_batch(batch_loss)
            more = i + cfg.batch_size < used
            if more and stop is not None and stop.signum is not None:
                save_checkpoint(epoch, i + cfg.batch_size, order, loss_sum, time.perf_counter() - start)
                raise Interrupted(stop.signum, f"at epoch {epoch}, step {step}")
            if more and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save_checkpoint(epoch, i + cfg.batch_size, order, loss_sum, time.perf_counter() - start)
        order = None
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            train_loss_eval, train_acc = evaluate(model, train_x[:eval_n], train_y[:eval_n], cfg.eval_batch_size)
            val_loss, val_acc = evaluate(model, data.val_x, data.val_y, cfg.eval_batch_size)
            row = dict(
                epoch=epoch, train_loss=loss_sum / used, train_acc=train_acc,
                val_loss=val_loss, val_acc=val_acc, train_loss_eval=train_loss_eval,
            )  # fmt: skip
            if cfg.track_activations:
                row.update(activation_variances(model, data.val_x[:PROBE_SIZE]))
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)
        stopping = stop is not None and stop.signum is not None and epoch < cfg.epochs
        save_checkpoint(epoch + 1, 0, None, 0.0, time.perf_counter() - start, force=stopping)
        if stopping:
            raise Interrupted(stop.signum, f"after epoch {epoch}")
    train_seconds = time.perf_counter() - start
    test_loss, test_acc = evaluate(model, data.test_x, data.test_y, cfg.eval_batch_size)
    last = history[-1]
    summary = {
        **{k: last[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc")},
        "test_loss": test_loss,
        "test_acc": test_acc,
        "train_loss_eval": last["train_loss_eval"],
        "gap": last["val_loss"] - last["train_loss_eval"],
        "seconds": train_seconds,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "threads": threads,
        "threads_note": threads_note,
        "data": data.source,
        "data_sha256": data.digest,
        "versions": {
            "droplab": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "machine": f"{platform.machine()} {platform.system()}, {_cpu_name()}",
    }
    return RunResult(history=history, summary=summary, model=model)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_run(directory: Path, cfg: TrainConfig, result: RunResult) -> None:
    """Write a finished run's files into its directory, each atomically, ``summary.json`` last."""
    rundir.write_csv(directory / "metrics.csv", METRICS, [{k: h[k] for k in METRICS} for h in result.history])
    rundir.save_weights(directory / "model.pt", result.model.state_dict())
    fig = plots.run_curves(result.history, title=f"{cfg.model}, seed {cfg.seed}")
    rundir.save_figure(directory / "curves.png", fig)
    rundir.write_json(directory / "summary.json", {"status": "finished", **result.summary})
    (directory / CHECKPOINT).unlink(missing_ok=True)  # model.pt has the weights; the run is done


def _checkpoint_bytes(cfg: TrainConfig, n_train: int) -> int:
    """About how large a checkpoint of this run is: weights, optimizer buffers, the epoch's order."""
    dims = [784, *cfg.hidden, 10]
    params = sum(a * b + b for a, b in zip(dims, dims[1:])) + 4 * sum(cfg.hidden)
    return 4 * params * (1 + _optimizer_buffers(cfg)) + 8 * n_train + (1 << 16)


def _optimizer_buffers(cfg: TrainConfig) -> int:
    """Copies of the weights the optimizer keeps: Adam 2; SGD 1 with momentum (which the
    one-cycle schedule turns on), else 0."""
    return 2 if cfg.optimizer == "adam" else (1 if cfg.momentum or cfg.schedule == "onecycle" else 0)


def check_memory(cfg: TrainConfig, data: FashionMNIST) -> None:
    """Refuse a run whose model and batches the memory available cannot hold (a
    :class:`ConfigError` for ``hidden``, with both figures), before any work."""
    n_train = cfg.train_size or len(data.train_x)
    eval_n = max(min(cfg.eval_train_size or n_train, n_train), len(data.val_x), len(data.test_x))
    need = run_bytes(cfg.hidden, _optimizer_buffers(cfg), min(cfg.batch_size, n_train),
                     min(cfg.eval_batch_size, eval_n), new_images=cfg.train_size)  # fmt: skip
    free = available_bytes()
    if free is not None and need > free:
        raise ConfigError("hidden", cfg.hidden, f"layers this machine's memory holds: this run needs about "
                          f"{need / 2**30:,.1f} GiB, {free / 2**30:,.1f} GiB are available")  # fmt: skip


def _check_resources(directory: Path, cfg: TrainConfig, n_train: int) -> None:
    """Refuse, before any work, a run the disk cannot hold."""
    need = 3 * _checkpoint_bytes(cfg, n_train) + (1 << 20)  # a checkpoint, its next version, model.pt
    free = shutil.disk_usage(directory).free
    if free < need:
        raise rundir.RunDirError(
            f"not enough space in {directory}: {free / 2**20:.1f} MiB free, this run's checkpoints and "
            f"results need about {need / 2**20:.1f} MiB"
        )


def _train_in(directory: Path, cfg: TrainConfig, data: FashionMNIST, state: dict | None, label: str | None):
    """Train in a claimed run directory, checkpointing; record an interruption or a divergence."""
    n_train = cfg.train_size or len(data.train_x)
    batches = batches_per_epoch(cfg, n_train)
    done = state.get("step") if state and type(state.get("step")) is int else 0  # checked by fit
    with StopRequest() as stop, TrainProgress(cfg.epochs, batches, label or cfg.model, done=done) as progress:
        try:
            result = fit(
                cfg, data, on_batch=progress.batch, on_epoch=progress.epoch,
                checkpoint=directory / CHECKPOINT, resume=state, stop=stop,
            )  # fmt: skip
        except Interrupted as err:
            err.directory = directory
            rundir.write_json(directory / "summary.json", {
                "status": "interrupted", "signal": signal.Signals(err.signum).name, "where": err.where,
                "resume": f"droplab train --resume {directory}",
            })  # fmt: skip
            raise
        except Diverged as err:
            has_checkpoint = (directory / CHECKPOINT).exists()
            err.directory = directory if has_checkpoint else None
            rundir.write_json(directory / "summary.json", {
                "status": "diverged", "epoch": err.epoch, "step": err.step, "reason": err.what,
                "last_checkpoint": str(directory / CHECKPOINT) if has_checkpoint else None,
            })  # fmt: skip
            raise
    write_run(directory, cfg, result)
    result.directory = directory
    return result


def run(
    cfg: TrainConfig,
    data: FashionMNIST,
    out: str | Path | None = None,
    runs_root: str | Path = "runs",
    label: str | None = None,
) -> RunResult:
    """Train and write a run directory: ``config.json`` first, checkpoints as it goes, the
    results when done.

    ``out`` (default: a fresh ``runs_root/<model>-<timestamp>``) is claimed before training
    starts, so an unusable, already used or too full directory is an error before any work.
    SIGINT/SIGTERM stop it at a safe point (``Interrupted``); :func:`resume` goes on.
    """
    cfg.validate()
    check_batch_size(cfg, data)
    check_memory(cfg, data)
    directory = rundir.claim_dir(out) if out is not None else rundir.new_run_dir(runs_root, cfg.model)
    try:
        _check_resources(directory, cfg, cfg.train_size or len(data.train_x))
        rundir.write_json(
            directory / "config.json",
            {**cfg.to_dict(), "data": data.source, "data_sha256": data.digest, "command": " ".join(sys.argv)},
        )
        return _train_in(directory, cfg, data, None, label)
    except BaseException:
        rundir.abandon_dir(directory, ["config.json"])  # failed before it wrote anything to go on from
        raise
    finally:
        rundir.release_dir(directory)


def _run_record(directory: Path) -> dict:
    """``config.json`` of the run in ``directory``: its configuration and the data it trained on."""
    try:
        is_run = (directory / ".droplab").is_file() and (directory / "config.json").is_file()
    except OSError as err:  # a name too long, a loop of links
        raise rundir.RunDirError(f"{directory}: {err.strerror}") from None
    if not is_run:
        raise rundir.RunDirError(f"{directory} is not a droplab run directory (no .droplab and config.json)")
    try:
        record = json.loads(rundir.read_regular(directory / "config.json", 1 << 24, "a run's config.json"))
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
    """Refuse to go on with the run in ``directory`` on other data than it started on."""
    directory = Path(directory)
    record = _run_record(directory)
    trained = record.get("data_sha256")
    if trained != data.digest:
        began = f"data with digest {trained}" if trained else "data of unknown digest (an older droplab)"
        raise DataMismatch(
            f"{directory} was started on {began} from {record.get('data', '?')}; the data given now, from "
            f"{data.source}, has digest {data.digest}: a run goes on only on the data it started on"
        )


def resume(directory: str | Path, data: FashionMNIST, threads: int | None = None, label: str | None = None):
    """Go on with the run in ``directory`` from its last checkpoint (or from the start, when it
    was stopped before the first): the result is bit for bit the uninterrupted run's.

    Raises:
        DataMismatch: ``data`` is not the data the run started on.
    """
    directory = Path(directory)
    cfg = run_config(directory)
    check_same_data(directory, data)
    if threads is not None:
        cfg.threads = threads
    rundir.lock_dir(directory)
    try:
        summary = directory / "summary.json"
        if summary.is_file() and _status(summary) == "finished":
            raise rundir.RunDirError(f"{directory} holds a finished run: nothing to resume")
        state = load_checkpoint(directory / CHECKPOINT) if (directory / CHECKPOINT).exists() else None
        _check_resources(directory, cfg, cfg.train_size or len(data.train_x))
        return _train_in(directory, cfg, data, state, label)
    finally:
        rundir.release_dir(directory)


def _status(summary: Path) -> str | None:
    try:
        record = json.loads(rundir.read_regular(summary, 1 << 24, "a run's summary.json"))
    except (OSError, ValueError, RecursionError):
        return None  # damaged: not a finished run's (it is written last, atomically)
    return record.get("status") if isinstance(record, dict) else None
