"""The options that choose where ``study`` and ``compare`` run their runs: ``--backend``,
``--address``, ``--cpus-per-run`` (and ``--jobs``, retired, which says what replaced it)."""

from __future__ import annotations

import argparse

from rich.console import Console

from .errors import UsageError, flag

__all__ = ["add_backend_options", "backend_from_args"]


def add_backend_options(parser: argparse.ArgumentParser, retired_jobs: bool = False) -> None:
    """``--backend``, ``--address``, ``--cpus-per-run`` (and, with ``retired_jobs``, the hidden ``--jobs``)."""
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="where the runs train: local (default), this process with all of torch's threads; "
                             "ray, as tasks on a Ray cluster (pip install 'droplab[ray]'): the one at --address, "
                             "or a local one started for the command. The results are the same, bit for bit, for "
                             "the same threads per run on machines of the same CPU kind and versions")  # fmt: skip
    parser.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                        help="with --backend ray: the cluster's head (auto: the one `ray start --head` started on "
                             "this machine; default: start a local cluster of this machine's cores)")  # fmt: skip
    parser.add_argument("--cpus-per-run", type=int, default=None, metavar="N",
                        help="the torch threads of each run, and with --backend ray the CPUs Ray reserves for it "
                             "(default: local, every usable core; ray, 1)")  # fmt: skip
    if retired_jobs:  # study had it: it now says what replaced it
        parser.add_argument("--jobs", default=None, help=argparse.SUPPRESS)


def backend_from_args(args: argparse.Namespace, console: Console):
    """The backend the options ask for; UsageError for options that do not go together, or a bad value."""
    jobs = getattr(args, "jobs", None)
    if jobs == "1":  # the old default: what the local backend does
        console.print("note: --jobs is retired; --jobs 1 is what the default, --backend local, does", markup=False)
    elif jobs is not None:
        raise UsageError(f"--jobs {jobs}: retired with its pool of worker processes, which trained a study 1.05x to "
                         "1.34x slower than one process on a 2-core machine; for several processes or machines use "
                         "--backend ray [--address HOST:PORT] [--cpus-per-run N]")  # fmt: skip
    from ..studies.backends import BackendError, Local

    threads = getattr(args, "threads", None)  # compare's --threads: the same thing as --cpus-per-run
    if None not in (threads, args.cpus_per_run) and threads != args.cpus_per_run:
        raise UsageError(f"--cpus-per-run {args.cpus_per_run} and --threads {threads}: both set each run's threads; "
                         "give one of them")  # fmt: skip
    cpus = args.cpus_per_run if args.cpus_per_run is not None else threads
    if args.backend == "local" and args.address is not None:
        raise UsageError("--address goes with --backend ray only (the runs train in this process here)")
    try:
        if args.backend == "local":
            return Local(cpus)
    except BackendError as err:
        raise UsageError(f"--cpus-per-run {err.value}: invalid, expected {err.expected}") from None
    from ..studies.ray_backend import RayBackend

    say = lambda line: console.print(line, markup=False, soft_wrap=True)  # noqa: E731
    try:
        return RayBackend(args.address, 1 if cpus is None else cpus, log=say)
    except BackendError as err:
        raise UsageError(f"{flag(err.field)} {err.value}: invalid, expected {err.expected}") from None
