"""How the command line reports what ends a command: an exit status and a message naming its options.

The library's errors carry their data (a field and its value, a run directory, where the data
was looked for) and name no option; :func:`describe` turns each into what ``droplab`` prints
after ``droplab COMMAND:``, in the options' words, with the exit status: 2 for a bad command
line, 1 for data, checkpoints and the machine's refusals, 3 for a diverged run, 128 + the
signal for an interruption.
"""

from __future__ import annotations

import argparse

from ..checkpoint import CheckpointError
from ..data import DataError, DataNotFound, SplitError
from ..interrupt import Interrupted, StudyInterrupted, WorkerLost, exit_status
from ..kernels.cpu import KernelChoiceError
from ..rundir import DirectoryBusy, DirectoryNotEmpty, DirectoryOwned, RunDirError
from ..studies.backends import BackendError
from ..studies.ray_backend import ClusterError, ClusterUnreachable, RayMissing
from ..train import CheckpointWriteError, ConfigError, Diverged

__all__ = ["UsageError", "EXIT_USAGE", "EXIT_DIVERGED", "REPORTED", "describe", "flag", "option_message"]

EXIT_USAGE = 2
EXIT_DIVERGED = 3


class UsageError(Exception):
    """A command line that cannot run; the message names the option at fault."""


# what ends a command with a message rather than a traceback
REPORTED = (UsageError, KernelChoiceError, RayMissing, BackendError, ClusterError, ConfigError, DataError,
            CheckpointError, OSError, Diverged, Interrupted, StudyInterrupted, KeyboardInterrupt)  # fmt: skip


def flag(name: str) -> str:
    """The option of a field, as typed: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def option_message(err: ConfigError | SplitError) -> str:
    """Name the option, as typed: 'batch_size = 0' -> '--batch-size 0: invalid, expected ...'."""
    value = err.value
    shown = " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
    return f"{flag(err.field)} {shown}: invalid, expected {err.accepted}"


def directory_hint(err: RunDirError, args: argparse.Namespace) -> str:
    """What the user can do about an output directory the library refused, in the options' words."""
    study = args.command == "study"
    if isinstance(err, DirectoryNotEmpty):
        return ": choose another --out" if study else " (choose a new --out, or leave --out unset for a fresh " \
                                                      "timestamped directory)"
    if isinstance(err, DirectoryOwned):
        return ": choose another --out"
    if isinstance(err, DirectoryBusy):
        if getattr(args, "resume", None):
            return "; it cannot be resumed meanwhile"
        return ": wait, or choose another --out"
    return ""


def describe(err: BaseException, args: argparse.Namespace) -> tuple[int, str]:
    """The exit status, and the message after ``droplab COMMAND: ``, for ``err`` (one of :data:`REPORTED`)."""
    if isinstance(err, (UsageError, KernelChoiceError)):
        return EXIT_USAGE, f"error: {err}"
    if isinstance(err, RunDirError):
        return EXIT_USAGE, f"error: {err}{directory_hint(err, args)}"
    if isinstance(err, RayMissing):
        return EXIT_USAGE, f"error: --backend ray: {err}"
    if isinstance(err, ClusterUnreachable):
        where = f"--address {args.address}" if args.address else "--backend ray"
        return EXIT_USAGE, (f"error: {where}: {err}; start a cluster with `ray start --head` on its head machine, "
                            "or check the address and port that printed")  # fmt: skip
    if isinstance(err, BackendError):  # found on connecting: no node has the CPUs asked for
        typed = "--threads" if err.field == "cpus_per_run" and getattr(args, "cpus_per_run", 0) is None else \
            flag(err.field)  # fmt: skip
        return EXIT_USAGE, f"error: {typed} {err.value}: invalid, expected {err.expected}"
    if isinstance(err, ClusterError):
        return 1, f"error: {err}"
    if isinstance(err, ConfigError):  # found by the library once the data is known (the memory a run needs)
        typed = args.command in ("train", "compare") and not getattr(args, "resume", None)  # the user's options
        return EXIT_USAGE, f"error: {option_message(err) if typed else err}"
    if isinstance(err, SplitError):  # a validation split the data cannot give: the option's fault
        return EXIT_USAGE, f"error: {option_message(err)}"
    if isinstance(err, DataNotFound):
        return 1, f"error: {err.how_to_get('pass --data-dir DIR')}"
    if isinstance(err, (DataError, CheckpointError, CheckpointWriteError)):
        return 1, f"error: {err}"
    if isinstance(err, OSError):  # the machine's refusal (a full disk, no permission), not droplab's: say which file
        return 1, f"error: {err.strerror or err}{f': {err.filename}' if err.filename else ''}"
    if isinstance(err, Diverged):
        kept = f"; the last good checkpoint is in {err.directory} (droplab train --resume would diverge the same way)"
        return EXIT_DIVERGED, f"error: {err}{kept if err.directory else ''}"
    if isinstance(err, Interrupted):
        resume = f"; resume with: droplab train --resume {err.directory}"
        return exit_status(err.signum), f"{err}{resume if err.directory else ''}"
    if isinstance(err, StudyInterrupted) and args.command == "compare":  # a comparison is never resumed
        return exit_status(err.signum), str(err)
    if isinstance(err, WorkerLost):  # not a stop asked for: the lost job starts over when the study resumes
        return exit_status(err.signum), f"{err}; finished runs are stored: the same command resumes"
    if isinstance(err, StudyInterrupted):
        kept = "" if getattr(args, "backend", "local") == "ray" else " and the runs under way checkpointed"
        return exit_status(err.signum), f"{err}; finished runs are stored{kept}: the same command resumes"
    return 130, "interrupted"  # KeyboardInterrupt
