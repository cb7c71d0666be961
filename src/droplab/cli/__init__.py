"""The ``droplab`` command: ``check``, ``train``, ``compare``, ``study``, ``report``.

Every option is checked before any work; a bad value ends with a message naming the
option, the value and what is accepted, and exit status 2.

- :mod:`~droplab.cli.check`: ``check``;
- :mod:`~droplab.cli.training`: ``train`` and ``compare``, whose configuration options
  :mod:`~droplab.cli.options` derives from :class:`~droplab.train.TrainConfig`'s fields;
- :mod:`~droplab.cli.studies`: ``study`` and ``report``;
- :mod:`~droplab.cli.errors`: what ends a command, as a message in the options' words and an
  exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..kernels import cpu as cpu_kernel
from . import check, studies, training
from .console import make_console
from .errors import REPORTED, UsageError, describe

__all__ = ["main", "build_parser", "UsageError"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="droplab", description="Dropout on Fashion-MNIST: check it, train with it, compare, study."
    )
    parser.add_argument("--version", action="version", version=f"droplab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    check.add_parser(sub)
    training.add_parsers(sub)
    studies.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``droplab`` with ``argv`` (default: the process's arguments); return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cpu_kernel.requested()  # a bad DROPLAB_CPU_KERNEL stops the command before any work
        return args.func(args, make_console())
    except REPORTED as err:
        status, message = describe(err, args)
        parser.exit(status, f"droplab {args.command}: {message}\n")


if __name__ == "__main__":
    sys.exit(main())
