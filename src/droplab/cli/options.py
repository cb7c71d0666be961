"""The options of ``train`` and ``compare`` (and those ``study`` shares with them): each
configuration option derived from a field of :class:`~droplab.train.TrainConfig` (its type,
default, help, choices and the rest of its metadata), and the options that choose the data and
the output.

A new field of the configuration is a new option of the commands its metadata names, with no
edit here; ``--recipe`` and ``--resume`` learn from the same metadata which options they fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from ..recipes import RECIPES, recipe
from ..rundir import RunDirError
from ..train import ConfigError, TrainConfig, run_config
from .errors import UsageError, flag, option_message

__all__ = ["add_options", "config_from_args", "check_options", "resume_config", "RUN_OPTIONS"]

# the options that are not the configuration's: name -> (argparse's keywords, the commands offering
# it, whether --resume may come with it)
RUN_OPTIONS: dict[str, tuple[dict[str, Any], tuple[str, ...], bool]] = {
    "recipe": (dict(default=None, metavar="NAME", help=f"a documented configuration: {', '.join(RECIPES)} (see "
                    "droplab/recipes.py); it fixes the training options"), ("train",), False),  # fmt: skip
    "data_dir": (dict(default=None, help="directory with the four Fashion-MNIST .gz files (default: search)"),
                 ("train", "compare", "study"), True),  # fmt: skip
    "no_verify": (dict(action="store_true", help="skip the SHA-256 check (for data other than the official "
                       "release)"), ("train", "compare", "study"), True),  # fmt: skip
    "out": (dict(default=None, help="output directory (must not hold results)"), ("train", "compare"), False),
    "runs_root": (dict(default="runs", help="where fresh run directories go when --out is not given"),
                  ("train", "compare"), False),  # fmt: skip
    "resume": (dict(default=None, metavar="RUN_DIR", help="go on with an interrupted or killed run from its last "
                    "checkpoint, bit for bit (on the data the run recorded, unless --data-dir says where it is now)"),
               ("train",), True),  # fmt: skip
}


def _fields(command: str) -> list[dataclasses.Field]:
    """The configuration's fields that ``command`` offers as options."""
    return [f for f in dataclasses.fields(TrainConfig) if command in f.metadata["commands"]]


def _default(f: dataclasses.Field) -> Any:
    """A field's default as argparse gives it (a list for several values)."""
    return list(f.default) if isinstance(f.default, tuple) else f.default


class _Given(argparse.Action):
    """Stores the option's value and notes it as given (``args.given``): an option typed with its
    default value is still asked for, and a recipe or a resumed run must not drop it silently."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        _note_given(namespace, self.dest)


class _GivenFlag(argparse.BooleanOptionalAction):
    """``--name`` / ``--no-name``, noted as given like :class:`_Given`."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _note_given(namespace, self.dest)


def _note_given(namespace: argparse.Namespace, name: str) -> None:
    namespace.__dict__.setdefault("given", set()).add(name)


def _is_given(args: argparse.Namespace, name: str, default: Any) -> bool:
    """Whether option ``name`` was typed (or, where that was not noted, differs from ``default``)."""
    return name in getattr(args, "given", ()) or getattr(args, name) != default


def _argument(f: dataclasses.Field, hint: Any) -> dict[str, Any]:
    """``add_argument``'s keywords for field ``f`` of type ``hint``."""
    meta, default = f.metadata, _default(f)
    text = ("model mlp only: " if meta["mlp"] else "model vit only: " if meta["vit"] else "") + meta["help"]
    if default is not None:  # None: the help says what happens
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        text = text[:-1] + f"; default: {shown})" if text.endswith(")") else text + f" (default: {shown})"
    kw: dict[str, Any] = {"default": default, "help": text.replace("%", "%%")}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # int | None, Optional[int]
        hint = next(t for t in typing.get_args(hint) if t is not type(None))
    if hint is bool:  # --name / --no-name: a value typed after it would be read as text, "False" as true
        return kw | {"action": _GivenFlag}
    if typing.get_origin(hint) is tuple:  # several values: tuple[int, ...]
        kw["nargs"], hint = "+", typing.get_args(hint)[0]
    if meta["choices"]:
        kw["choices"] = meta["choices"]
    else:
        kw["type"] = hint
    return kw | {"metavar": meta["metavar"], "action": _Given}


def add_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add ``command``'s options: the configuration's, then the data's and the output's."""
    hints = typing.get_type_hints(TrainConfig)
    for f in _fields(command):
        parser.add_argument(flag(f.name), **_argument(f, hints[f.name]))
    for name, (keywords, commands, _) in RUN_OPTIONS.items():
        if command in commands:  # a value typed is noted as given (the flags without one are given when true)
            parser.add_argument(flag(name), **({"action": _Given} | keywords))


def check_options(args: argparse.Namespace, fields: list[dataclasses.Field] | None = None) -> None:
    """Check the values of the configuration's options ``args`` was given (``fields``; default: all
    that its command offers) each on its own: :class:`UsageError` naming the first bad one."""
    for f in _fields(args.command) if fields is None else fields:
        if not f.metadata["valid"](value := getattr(args, f.name)):
            raise UsageError(option_message(ConfigError(f.name, value, f.metadata["accepted"])))


def _given(args: argparse.Namespace, fixed: bool) -> list[dataclasses.Field]:
    """The fields a recipe fixes (``fixed``) or leaves open whose options were given."""
    return [f for f in _fields(args.command) if f.metadata["recipe"] == fixed and _is_given(args, f.name, _default(f))]


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The configuration ``train`` or ``compare`` was given: its options, or ``--recipe NAME`` with
    the options a recipe leaves open; checked (:class:`UsageError` naming the option)."""
    if getattr(args, "recipe", None):
        cfg = _recipe_config(args)
    else:
        cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in _fields(args.command)})
    try:
        return cfg.validate()
    except ConfigError as err:
        raise UsageError(option_message(err)) from None


def _recipe_config(args: argparse.Namespace) -> TrainConfig:
    changed = [flag(f.name) for f in _given(args, fixed=True)]
    if changed:
        left = [flag(f.name) for f in _fields(args.command) if not f.metadata["recipe"]]
        raise UsageError(f"--recipe {args.recipe} sets the training options itself; {', '.join(changed)} cannot be "
                         f"combined with it (only {', '.join(left)} and the data and output options can)")  # fmt: skip
    try:
        return recipe(args.recipe, **{f.name: getattr(args, f.name) for f in _given(args, fixed=False)})
    except ValueError as err:
        raise UsageError(f"--recipe {args.recipe}: {err}") from None


def resume_config(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """The configuration of the run ``--resume`` goes on with (its own), and the options given that
    change only how it runs (the run-only fields: ``--threads``, ``--checkpoint-every``), as
    :func:`droplab.train.resume` takes them. The options that would change what the run computes
    cannot come with it (:class:`UsageError`)."""
    fields = _fields(args.command)
    fixed = [(f.name, _default(f)) for f in fields if not f.metadata["run_only"]]
    fixed += [(name, kw.get("default", False)) for name, (kw, _, resumable) in RUN_OPTIONS.items() if not resumable]
    changed = [flag(name) for name, default in fixed if _is_given(args, name, default)]
    run_only = [f for f in fields if f.metadata["run_only"]]
    if changed:
        allowed = [flag(f.name) for f in run_only]
        allowed += [flag(name) for name, (_, commands, resumable) in RUN_OPTIONS.items()
                    if resumable and name != "resume" and args.command in commands]  # fmt: skip
        raise UsageError(f"--resume {args.resume} goes on with the run's own configuration; {', '.join(changed)} "
                         f"cannot be combined with it (only {', '.join(allowed[:-1])} and {allowed[-1]} can)")
    check_options(args, run_only)
    try:
        cfg = run_config(args.resume)
    except RunDirError as err:
        raise UsageError(f"--resume {args.resume}: {err}") from None
    return cfg, {f.name: getattr(args, f.name) for f in run_only if _is_given(args, f.name, _default(f))}
