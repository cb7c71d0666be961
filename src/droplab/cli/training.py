"""``droplab train`` (one run, or ``--resume`` of one) and ``droplab compare`` (plain vs dropout over seeds)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.console import Console

from ..data import OFFICIAL_DIGEST, FashionMNIST, load_fashion_mnist
from ..progress import StudyProgress
from ..threads import use_threads
from ..train import TrainConfig, check_batch_size, check_memory, resume, run, run_data
from ..train.precision import resolve as resolve_precision
from .backend import add_backend_options, backend_from_args
from .console import print_table
from .errors import UsageError
from .options import add_options, config_from_args, resume_config

__all__ = ["add_parsers", "cmd_train", "cmd_compare"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train one model (default: the lecture's run)")
    add_options(train, "train")
    train.set_defaults(func=cmd_train)
    comp = sub.add_parser("compare", help="plain vs scratch vs concise over several seeds")
    comp.add_argument("--seeds", type=int, default=3, help="number of seeds (default: 3)")
    add_options(comp, "compare")
    add_backend_options(comp)  # --backend, --address, --cpus-per-run
    comp.set_defaults(func=cmd_compare)


def _load(args: argparse.Namespace, cfg: TrainConfig) -> FashionMNIST:
    """The data the run trains on, and the checks that need it (a :class:`~droplab.train.ConfigError`
    names the option where the user typed it: :func:`~droplab.cli.errors.describe`)."""
    data_dir, verify = args.data_dir, not args.no_verify
    if getattr(args, "resume", None):  # by default, the data the run started on: its directory and digest
        data_dir, verify = _resume_data(args, *run_data(args.resume))
    data = load_fashion_mnist(data_dir, val_size=cfg.val_size, split_seed=cfg.split_seed, verify=verify)
    check_batch_size(cfg, data)
    check_memory(cfg, data)
    return data


def _resume_data(args: argparse.Namespace, recorded_dir: str | None, digest: str | None) -> tuple[str | None, bool]:
    """Where ``--resume`` reads its data: ``--data-dir``, else the directory the run recorded
    (when it is still there). The official files are verified as usual; other data is not
    (``--no-verify`` is implied): the run's recorded digest is checked instead, which is stricter."""
    data_dir = args.data_dir
    if data_dir is None and not os.environ.get("DROPLAB_DATA") and recorded_dir and Path(recorded_dir).is_dir():
        data_dir = recorded_dir
    return data_dir, not args.no_verify and digest in (OFFICIAL_DIGEST, None)


def _cap_threads(threads: int | None, console: Console) -> int | None:
    """``--threads`` as used: at most the cores this process may run on, with a note when capped."""
    if threads is None:
        return None
    used, note = use_threads(threads)
    if note:
        console.print(f"note: {note}", markup=False)
    return used


def _note_precision(precision: str, console: Console) -> None:
    """Say so before any work when the precision asked for falls back on this CPU."""
    note = resolve_precision(precision)[1]
    if note:
        console.print(f"note: {note}", markup=False)


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    if args.resume:  # the run's own configuration; changes: the run-only options given (--threads, ...)
        cfg, changes = resume_config(args)
        if "threads" in changes:
            changes["threads"] = _cap_threads(changes["threads"], console)
    else:
        cfg, changes = config_from_args(args), {}
        cfg.threads = _cap_threads(cfg.threads, console)
    _note_precision(cfg.precision, console)
    data = _load(args, cfg)
    start = time.perf_counter()
    if args.resume:
        result = resume(args.resume, data, **changes)
    else:
        result = run(cfg, data, out=args.out, runs_root=args.runs_root)
    s = result.summary
    rows = [["epoch", "train loss", "train acc", "val loss", "val acc"]]
    rows += [
        [str(h["epoch"]), f"{h['train_loss']:.4f}", f"{h['train_acc']:.4f}",
         f"{h['val_loss']:.4f}", f"{h['val_acc']:.4f}"]
        for h in result.history
    ]  # fmt: skip
    shape = ", ".join(f"{k} {v}" for k, v in cfg.vit_options().items()) if cfg.model == "vit" else \
        f"hidden {list(cfg.hidden)}, dropout {list(cfg.dropout)}"
    schedule = f", dropout schedule {cfg.dropout_schedule}" if cfg.dropout_schedule != "constant" else ""
    print_table(console, rows, title=f"{cfg.model}: {shape}{schedule}")
    console.print(
        f"test loss {s['test_loss']:.4f}, test acc {s['test_acc']:.4f}; "
        f"training {s['seconds']:.1f} s ({s['threads']} threads{', ' + s['precision'] if 'precision' in s else ''}), "
        f"total {time.perf_counter() - start:.1f} s"
    )
    console.print(f"run directory: {result.directory}")
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from ..compare import claims, compare, format_table

    cfg = config_from_args(args)
    cfg.threads = _cap_threads(cfg.threads, console)
    if args.seeds < 1:
        raise UsageError(f"--seeds {args.seeds}: invalid, expected an integer >= 1")
    _note_precision(cfg.precision, console)
    backend = backend_from_args(args, console)
    try:
        data = _load(args, cfg)
        with StudyProgress("compare") as progress:
            result = compare(data, seeds=args.seeds, base=cfg, out=args.out, runs_root=args.runs_root, backend=backend,
                             log=lambda line: console.print(line, markup=False, soft_wrap=True), progress=progress)
    finally:
        backend.close()
    print_table(
        console, format_table(result),
        title=f"mean ± std over {len(result.seeds)} seed(s), {cfg.epochs} epochs",
    )  # fmt: skip
    console.print("gap = val loss − train loss, both in eval mode")
    for line in claims(result):
        console.print(line, markup=False, soft_wrap=True)
    console.print(f"results: {result.directory}/compare.md, compare.json, compare.png")
    return 0
