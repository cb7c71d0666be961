"""The ``droplab`` command: ``check``, ``train``, ``compare``, ``study``, ``report``.

Every option is checked before any work; a bad value ends with a message naming the
option, the value and what is accepted, and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .checkpoint import CheckpointError
from .data import DataError, SplitError, load_fashion_mnist
from .functional import IMPLEMENTATIONS
from .interrupt import Interrupted, StudyInterrupted, WorkerLost, exit_status
from .models import MODEL_NAMES, NORMS
from .noise import NOISE_KINDS
from .recipes import RECIPES, recipe
from .rundir import RunDirError
from .threads import use_threads
from .train import (
    OPTIMIZERS,
    SCHEDULES,
    CheckpointWriteError,
    ConfigError,
    Diverged,
    TrainConfig,
    check_batch_size,
    check_memory,
)  # fmt: skip

EXIT_USAGE = 2
MAX_DRAWS = 10**8  # droplab check: 400 MB of float32 ones per p
EXIT_DIVERGED = 3


class UsageError(Exception):
    pass


def _print_table(console: Console, rows: list[list[str]], title: str | None = None) -> None:
    table = Table(*map(escape, rows[0]), title=title and escape(title), title_justify="left")
    for row in rows[1:]:
        table.add_row(*map(escape, row))
    console.print(table)


# --- check ------------------------------------------------------------------------------


_IMPL_TITLES = {
    "reference": "dropout_reference (the lecture's code: mask from uniform draws)",
    "fast": "dropout (droplab's fast kernel: counter-based mask)",
}


def _implementations():
    """(name, function) pairs, the lecture's reference first."""
    return [(name, IMPLEMENTATIONS[name]) for name in _IMPL_TITLES]


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    x = torch.arange(16, dtype=torch.float32).reshape(2, 8)
    console.print("The lecture's quick check: X = arange(16).reshape(2, 8)")
    for name, fn in _implementations():
        torch.manual_seed(args.seed)
        console.print(f"\n{_IMPL_TITLES[name]}:")
        for p in (0.0, 0.5, 1.0):
            console.print(f"dropout(X, p={p}):\n{fn(x, p)}")
    n = args.draws
    console.print(
        f"\nEmpirical check over {n:,} draws per p (input of ones, seed {args.seed}); "
        "bounds are 5 binomial standard deviations:"
    )
    rows = [["dropout", "p", "kept fraction", "expected", "5σ bound", "E[h']/h", "5σ bound", "result"]]
    ok = True
    for name, fn in _implementations():
        torch.manual_seed(args.seed)
        for p in (0.1, 0.5, 0.9):
            out = fn(torch.ones(n), p)
            kept = (out != 0).double().mean().item()
            ratio = out.double().mean().item()
            kept_bound = 5 * math.sqrt(p * (1 - p) / n)
            ratio_bound = 5 * math.sqrt(p / (1 - p) / n)  # std of h' for h = 1 is sqrt(p / (1 - p))
            good = abs(kept - (1 - p)) <= kept_bound and abs(ratio - 1) <= ratio_bound
            ok &= good
            rows.append([
                name, f"{p}", f"{kept:.5f}", f"{1 - p:.5f}", f"±{kept_bound:.5f}",
                f"{ratio:.5f}", f"±{ratio_bound:.5f}", "ok" if good else "FAIL",
            ])  # fmt: skip
    _print_table(console, rows)
    console.print("all within bounds" if ok else "OUTSIDE the 5σ bounds: dropout is biased")
    return 0 if ok else 1


# --- train / compare --------------------------------------------------------------------


_MODEL_OPTIONS = ("noise", "norm", "max_norm", "train_size", "schedule", "augment")
_DEFAULTS = TrainConfig().to_dict() | {"dropout": list(TrainConfig().dropout), "hidden": list(TrainConfig().hidden),
                                       "model": "scratch"}  # fmt: skip
_RECIPE_FIXED = ("model", "hidden", "dropout", "dropout_impl", "batch_size", "lr", "optimizer", "momentum",
                 "weight_decay") + _MODEL_OPTIONS  # fmt: skip


def _config(args: argparse.Namespace) -> TrainConfig:
    cfg = TrainConfig(
        model=getattr(args, "model", "scratch"),  # compare has no --model
        dropout_impl=args.dropout_impl,
        hidden=tuple(args.hidden),
        dropout=tuple(args.dropout),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        seed=args.seed,
        val_size=args.val_size,
        split_seed=args.split_seed,
        threads=args.threads,
        checkpoint_every=getattr(args, "checkpoint_every", 0),
        **{k: getattr(args, k) for k in _MODEL_OPTIONS if hasattr(args, k)},
    )
    if getattr(args, "recipe", None):
        changed = [f"--{k.replace('_', '-')}" for k in _RECIPE_FIXED if getattr(args, k) != _DEFAULTS[k]]
        if changed:
            raise UsageError(
                f"--recipe {args.recipe} sets the training options itself; {', '.join(changed)} cannot be "
                "combined with it (only --seed, --epochs, --threads and the data and output options can)"
            )
        try:
            cfg = recipe(args.recipe, seed=args.seed, threads=args.threads, val_size=args.val_size,
                         split_seed=args.split_seed,
                         **({"epochs": args.epochs} if args.epochs != _DEFAULTS["epochs"] else {}))  # fmt: skip
        except ValueError as err:
            raise UsageError(f"--recipe {args.recipe}: {err}") from None
    try:
        return cfg.validate()
    except ConfigError as err:
        raise UsageError(_option_message(err)) from None


def _option_message(err: ConfigError | SplitError) -> str:
    """Name the CLI option, as typed: 'batch_size = 0' -> '--batch-size 0'."""
    value = err.value
    shown = " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
    return f"--{err.field.replace('_', '-')} {shown}: invalid, expected {err.accepted}"


def _load(args: argparse.Namespace, cfg: TrainConfig):
    data_dir, verify = args.data_dir, not args.no_verify
    if getattr(args, "resume", None):  # by default, the data the run started on: its directory and digest
        from .train import run_data

        data_dir, verify = _resume_data(args, *run_data(args.resume))
    data = load_fashion_mnist(data_dir, val_size=cfg.val_size, split_seed=cfg.split_seed, verify=verify)
    try:
        check_batch_size(cfg, data)
        check_memory(cfg, data)
    except ConfigError as err:
        raise UsageError(_option_message(err)) from None
    return data


def _resume_data(args: argparse.Namespace, recorded_dir: str | None, digest: str | None) -> tuple[str | None, bool]:
    """Where ``--resume`` reads its data: ``--data-dir``, else the directory the run recorded
    (when it is still there). The official files are verified as usual; other data is not
    (``--no-verify`` is implied): the run's recorded digest is checked instead, which is stricter."""
    import os
    from pathlib import Path

    from .data import OFFICIAL_DIGEST

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


_RESUME_ALLOWED = ("threads", "data_dir", "no_verify", "resume")


def _resume_config(args: argparse.Namespace) -> TrainConfig:
    """The run's own configuration; options that would change it cannot come with --resume."""
    from .train import run_config

    fixed = {**_DEFAULTS, "recipe": None, "out": None, "runs_root": "runs", "checkpoint_every": 0}
    changed = [
        f"--{k.replace('_', '-')}"
        for k, default in fixed.items()
        if k not in _RESUME_ALLOWED and hasattr(args, k) and getattr(args, k) != default
    ]
    if changed:
        raise UsageError(
            f"--resume {args.resume} goes on with the run's own configuration; {', '.join(changed)} cannot be "
            "combined with it (only --threads, --data-dir and --no-verify can)"
        )
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: invalid, expected an integer >= 1")
    try:
        return run_config(args.resume)
    except RunDirError as err:
        raise UsageError(f"--resume {args.resume}: {err}") from None


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    from .train import resume, run

    cfg = _resume_config(args) if args.resume else _config(args)
    cfg.threads = _cap_threads(cfg.threads if not args.resume else args.threads, console) or cfg.threads
    data = _load(args, cfg)
    start = time.perf_counter()
    if args.resume:
        result = resume(args.resume, data, threads=cfg.threads if args.threads is not None else None)
    else:
        result = run(cfg, data, out=args.out, runs_root=args.runs_root)
    s = result.summary
    rows = [["epoch", "train loss", "train acc", "val loss", "val acc"]]
    rows += [
        [str(h["epoch"]), f"{h['train_loss']:.4f}", f"{h['train_acc']:.4f}",
         f"{h['val_loss']:.4f}", f"{h['val_acc']:.4f}"]
        for h in result.history
    ]  # fmt: skip
    _print_table(console, rows, title=f"{cfg.model}: hidden {list(cfg.hidden)}, dropout {list(cfg.dropout)}")
    console.print(
        f"test loss {s['test_loss']:.4f}, test acc {s['test_acc']:.4f}; "
        f"training {s['seconds']:.1f} s ({s['threads']} threads), "
        f"total {time.perf_counter() - start:.1f} s"
    )
    console.print(f"run directory: {result.directory}")
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from .compare import claims, compare, format_table

    cfg = _config(args)
    cfg.threads = _cap_threads(cfg.threads, console)
    if args.seeds < 1:
        raise UsageError(f"--seeds {args.seeds}: invalid, expected an integer >= 1")
    data = _load(args, cfg)
    result = compare(data, seeds=args.seeds, base=cfg, out=args.out, runs_root=args.runs_root)
    _print_table(
        console, format_table(result),
        title=f"mean ± std over {len(result.seeds)} seed(s), {cfg.epochs} epochs",
    )  # fmt: skip
    console.print("gap = val loss − train loss, both in eval mode")
    for line in claims(result):
        console.print(line, markup=False, soft_wrap=True)
    console.print(f"results: {result.directory}/compare.md, compare.json, compare.png")
    return 0


def cmd_study(args: argparse.Namespace, console: Console) -> int:
    from .studies.catalog import STUDIES
    from .studies.engine import StudyError, run_study
    from .studies.plan import PlanError

    if args.name == "list":
        for name, st in STUDIES.items():
            console.print(f"{name:20s} {st.title}", markup=False, soft_wrap=True)
        return 0
    names = list(STUDIES) if args.name == "all" else [args.name]
    if names[0] not in STUDIES:
        raise UsageError(f"study {args.name!r}: unknown, expected one of all, list, {', '.join(STUDIES)}")
    checks = [("--seeds", args.seeds, 1), ("--epochs", args.epochs, 1), ("--jobs", args.jobs, 1),
              ("--max-runs", args.max_runs, 1)]  # fmt: skip
    checks.append(("--val-size", args.val_size, 1))
    for option, value, low in checks:
        if value is not None and value < low:
            raise UsageError(f"{option} {value}: invalid, expected an integer >= {low}")
    from pathlib import Path

    root = Path(args.out) if args.out else Path("results") / ("" if args.name == "all" else args.name)
    total = time.perf_counter()
    for name in names:
        out = root / name if args.name == "all" else root
        store = args.store or (root / "runs" if args.name == "all" else None)
        start = time.perf_counter()
        try:
            report = run_study(
                STUDIES[name], args.data_dir, out, seeds=args.seeds, epochs=args.epochs, quick=args.quick,
                jobs=args.jobs, store=store, verify=not args.no_verify, val_size=args.val_size, max_runs=args.max_runs,
                log=lambda line: console.print(line, markup=False, soft_wrap=True),
            )  # fmt: skip
        except StudyError as err:
            raise UsageError(str(err)) from None
        except PlanError as err:
            raise UsageError(f"--seeds {args.seeds}: {err}; ask for fewer seeds, or raise --max-runs if you mean it")
        console.print(f"\n{report['title']}", markup=False, soft_wrap=True)
        for claim in report["claims"]:
            console.print(claim["line"], markup=False, soft_wrap=True)
        console.print(f"{name}: {time.perf_counter() - start:.0f} s wall; results in {out}/ (study.json, summary.md, "
                      f"{', '.join(report['figures'])})\n", markup=False, soft_wrap=True)  # fmt: skip
    if len(names) > 1:
        console.print(f"all {len(names)} studies: {time.perf_counter() - total:.0f} s wall")
    return 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from .report import ReportError, write_report

    try:
        path = write_report(args.dirs, args.output)
    except ReportError as err:
        raise UsageError(str(err)) from None
    console.print(f"report: {path}", markup=False, soft_wrap=True)
    return 0


# --- parser -----------------------------------------------------------------------------


def _training_options(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--hidden", type=int, nargs="+", default=list(d.hidden), metavar="N",
                   help="hidden layer widths (default: 256 256)")
    p.add_argument("--dropout", type=float, nargs="+", default=list(d.dropout), metavar="P",
                   help="dropout probability per hidden layer (default: 0.5 0.5)")
    p.add_argument("--dropout-impl", choices=tuple(IMPLEMENTATIONS), default=d.dropout_impl,
                   help="dropout of the scratch model: droplab's fast kernel (default) or the "
                        "lecture's readable reference")
    p.add_argument("--epochs", type=int, default=d.epochs, help="default: %(default)s")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (default: %(default)s)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    p.add_argument("--val-size", type=int, default=d.val_size,
                   help="training images held out for validation (default: %(default)s)")
    p.add_argument("--split-seed", type=int, default=d.split_seed,
                   help="seed of the validation split (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--data-dir", default=None,
                   help="directory with the four Fashion-MNIST .gz files (default: search)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the SHA-256 check (for data other than the official release)")
    p.add_argument("--out", default=None, help="output directory (must not hold results)")
    p.add_argument("--runs-root", default="runs",
                   help="where fresh run directories go when --out is not given")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="droplab", description="Dropout on Fashion-MNIST: check it, train with it, compare."
    )
    parser.add_argument("--version", action="version", version=f"droplab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="the lecture's quick check and an empirical check")
    check.add_argument("--draws", type=int, default=1_000_000, help="draws per p (default: 10^6)")
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(func=cmd_check)

    train = sub.add_parser("train", help="train one model (default: the lecture's run)")
    train.add_argument("--model", choices=MODEL_NAMES, default="scratch",
                       help="scratch (lecture's DropoutMLPScratch), concise (nn.Dropout), plain, mlp (general)")
    train.add_argument("--recipe", default=None, metavar="NAME",
                       help=f"a documented configuration: {', '.join(RECIPES)} (see droplab/recipes.py)")
    _training_options(train)
    d = TrainConfig()
    train.add_argument("--noise", choices=tuple(NOISE_KINDS), default=d.noise, help="model mlp: noise after each ReLU")
    train.add_argument("--norm", choices=NORMS, default=d.norm, help="model mlp: normalization before each ReLU")
    train.add_argument("--max-norm", type=float, default=d.max_norm, help="max-norm bound on weight rows (0: off)")
    train.add_argument("--train-size", type=int, default=d.train_size, help="train on this many images (0: all)")
    train.add_argument("--schedule", choices=SCHEDULES, default=d.schedule, help="learning-rate schedule")
    train.add_argument("--augment", type=int, default=d.augment, help="random shifts of up to N pixels (0: off)")
    train.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                       help="a checkpoint every STEPS steps too (default: after each epoch only)")
    train.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="go on with an interrupted or killed run from its last checkpoint, bit for bit (on the "
                            "data the run recorded, unless --data-dir says where it is now)")
    train.set_defaults(func=cmd_train)

    comp = sub.add_parser("compare", help="plain vs scratch vs concise over several seeds")
    comp.add_argument("--seeds", type=int, default=3, help="number of seeds (default: 3)")
    _training_options(comp)
    comp.set_defaults(func=cmd_compare)

    study = sub.add_parser("study", help="run a study of the lecture's claims (NAME, all, or list)")
    study.add_argument("name", help="a study name, 'all' for every study, 'list' to list them")
    study.add_argument("--seeds", type=int, default=5, help="seeds per configuration (default: 5)")
    study.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the study's)")
    study.add_argument("--quick", action="store_true", help="a tiny setting (2 epochs, 2,000 images) for tests and CI")
    study.add_argument("--jobs", type=int, default=1,
                       help="worker processes, one torch thread each (default: 1, this process with torch's "
                            "threads, which is faster on a 2-core machine: see benchmarks/study_jobs.py)")
    study.add_argument("--out", default=None,
                       help="output directory (default: results/NAME; for 'all': results/, one directory per study "
                            "and the runs they share in results/runs); an interrupted study resumes there")
    study.add_argument("--store", default=None,
                       help="where finished runs are kept and looked up (default: OUT/runs); studies sharing a "
                            "store share identical runs")
    study.add_argument("--data-dir", default=None, help="directory with the four Fashion-MNIST .gz files")
    study.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check")
    study.add_argument("--val-size", type=int, default=5000, help="training images held out for validation")
    study.add_argument("--max-runs", type=int, default=10_000,
                       help="refuse a study of more runs than this (default: %(default)s); the plan, with its "
                            "estimated time, is printed before the runs start")
    study.set_defaults(func=cmd_study)

    report = sub.add_parser("report", help="one self-contained HTML page from study directories")
    report.add_argument("dirs", nargs="+", metavar="DIR", help="study directories (or directories holding them)")
    report.add_argument("-o", "--output", default="report.html", help="the HTML file (default: report.html)")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)  # logs and pipes: keep table rows whole
    try:
        if args.command == "check" and not 1 <= args.draws <= MAX_DRAWS:
            raise UsageError(f"--draws {args.draws}: invalid, expected an integer from 1 to {MAX_DRAWS:,}")
        if args.command == "check" and not 0 <= args.seed < 2**63:
            raise UsageError(f"--seed {args.seed}: invalid, expected an integer in [0, 2**63)")
        return args.func(args, console)
    except (UsageError, RunDirError) as err:
        parser.exit(EXIT_USAGE, f"droplab {args.command}: error: {err}\n")
    except ConfigError as err:  # found by the library once the data is known (the memory a run needs)
        typed = args.command in ("train", "compare") and not getattr(args, "resume", None)  # the user's options
        parser.exit(EXIT_USAGE, f"droplab {args.command}: error: {_option_message(err) if typed else err}\n")
    except SplitError as err:  # a validation split the data cannot give: the option's fault
        parser.exit(EXIT_USAGE, f"droplab {args.command}: error: {_option_message(err)}\n")
    except (DataError, CheckpointError, CheckpointWriteError) as err:
        parser.exit(1, f"droplab {args.command}: error: {err}\n")
    except OSError as err:  # the machine's refusal (a full disk, no permission), not droplab's: say which file
        where = f": {err.filename}" if err.filename else ""
        parser.exit(1, f"droplab {args.command}: error: {err.strerror or err}{where}\n")
    except Diverged as err:
        where = (
            f"; the last good checkpoint is in {err.directory} (droplab train --resume would diverge the same way)"
            if getattr(err, "directory", None)
            else ""
        )
        parser.exit(EXIT_DIVERGED, f"droplab {args.command}: error: {err}{where}\n")
    except Interrupted as err:
        how = f"; resume with: droplab train --resume {err.directory}" if getattr(err, "directory", None) else ""
        parser.exit(exit_status(err.signum), f"droplab {args.command}: {err}{how}\n")
    except StudyInterrupted as err:
        if isinstance(err, WorkerLost):  # not a stop asked for: the lost job goes on from its last checkpoint
            parser.exit(exit_status(err.signum), f"droplab {args.command}: {err}; finished runs are stored: "
                        "the same command resumes\n")  # fmt: skip
        parser.exit(
            exit_status(err.signum),
            f"droplab {args.command}: {err}; finished runs are stored and the runs under way checkpointed: "
            "the same command resumes\n",
        )
    except KeyboardInterrupt:
        parser.exit(130, f"droplab {args.command}: interrupted\n")


if __name__ == "__main__":
    sys.exit(main())
