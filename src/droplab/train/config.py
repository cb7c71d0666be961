"""What determines a run: :class:`TrainConfig` and its validation.

Each field of :class:`TrainConfig` carries what is known about it in its metadata: the values
it accepts (a predicate, and the words :class:`ConfigError` says them in), its help text and
choices, which commands offer it as an option, whether a recipe fixes it, whether only the
``mlp`` model has it, and whether it is no part of what a run computes (``run_only``: a
checkpoint written with another value goes on, and ``--resume`` may change it). ``validate``,
the checkpoint checks and the command line (:mod:`droplab.cli.options`) read it from there, so
that a new field is one edit. :func:`with_defaults` reads a configuration written before a
field existed as the run it was: that field at its default.

Examples::

    >>> cfg = TrainConfig(epochs=5, eval_every=2)
    >>> cfg.validate().epochs
    5
    >>> evaluated_epochs(cfg.epochs, cfg.eval_every)
    [2, 4, 5]
    >>> TrainConfig(epochs=0).validate()
    Traceback (most recent call last):
    ...
    droplab.train.config.ConfigError: epochs = 0 is invalid: expected an integer from 1 to 100,000
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..functional import IMPLEMENTATIONS as DROPOUT_IMPLS
from ..models import ACTIVATIONS, MODEL_NAMES, NORMS
from ..noise import NOISE_KINDS
from .dropout_schedule import SCHEDULE_ACCEPTED, is_schedule, parse_schedule

__all__ = [
    "ConfigError", "TrainConfig", "RUN_ONLY", "OPTIMIZERS", "SCHEDULES", "SELECTIONS", "SPLITS", "with_defaults",
    "batches_per_epoch", "evaluates", "evaluated_epochs", "evaluation_count", "generator",
]  # fmt: skip

OPTIMIZERS = ("sgd", "adam")
PRECISIONS = ("fp32", "bf16")  # what droplab.train.precision computes in
SCHEDULES = ("constant", "onecycle", "cosine")
SELECTIONS = ("last", "best_val")  # which evaluated epoch's weights a run ends with
SPLITS = ("droplab", "d2l")  # what a run trains on, and what it validates on
MAX_EPOCHS = 100_000  # the longest study run is 713 epochs; 10^20 epochs is a typo, not a plan
MAX_WIDTH = 2**31 - 1  # a layer's width: torch's sizes are 64-bit, but no machine holds a wider layer
FLOAT32_MAX = float(torch.finfo(torch.float32).max)  # the weights are float32: larger factors overflow
# a run's generators are seeded with its seed plus one of these, so that their streams differ
SHUFFLE_STREAM = 0x5DEECE66D  # the minibatch order (offset from the global generator's)
SUBSET_STREAM = 0x2545F4914F6CDD1D  # the training subset
AUGMENT_STREAM = 0x61C8864680B583EB  # the augmentation's shifts

BOTH = ("train", "compare")  # the commands that offer an option


class ConfigError(ValueError):
    """A configuration value outside what is accepted: ``field``, ``value`` and ``accepted``."""

    def __init__(self, field: str, value: Any, accepted: str) -> None:
        super().__init__(field, value, accepted)
        self.field, self.value, self.accepted = field, value, accepted

    def __str__(self) -> str:
        return f"{self.field} = {self.value!r} is invalid: expected {self.accepted}"


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)


def _option(
    default: Any,
    valid: Callable[[Any], bool],
    accepted: str,
    help: str | None = None,
    *,
    commands: tuple[str, ...] | None = None,
    choices: tuple | None = None,
    recipe: bool = False,
    mlp: bool = False,
    vit: bool = False,
    run_only: bool = False,
    metavar: str | None = None,
) -> Any:
    """A field and what is known about it.

    Args:
        valid: whether a value is accepted; ``accepted`` says which are, in :class:`ConfigError`.
        help: the option's help text; ``commands``: the commands that offer it (default: train
            and compare when it has help, else none: no option).
        recipe: a recipe (``--recipe``) fixes it. mlp, vit: only model ``mlp`` (``vit``) has it
            (another value than the default needs that model). run_only: no part of what a run computes
            (how it runs: a checkpoint of another value goes on, ``--resume`` may change it).

    Raises:
        ValueError: ``commands`` offer it without ``help`` (when the class is defined).
    """
    if commands is None:
        commands = BOTH if help else ()
    elif commands and not help:
        raise ValueError(f"a field offered as an option by {', '.join(commands)} needs its help text")
    meta = dict(valid=valid, accepted=accepted, help=help, commands=commands, choices=choices, recipe=recipe,
                mlp=mlp, vit=vit, run_only=run_only, metavar=metavar)  # fmt: skip
    return dataclasses.field(default=default, metadata=meta)


def _choice(default: str, values, help: str | None, **meta) -> Any:
    values = tuple(values)
    return _option(default, lambda v: v in values, "one of " + ", ".join(values), help, choices=values, **meta)


def _int(default: int | None, low: int, high: float = math.inf, accepted: str = "", help=None, **meta) -> Any:
    return _option(default, lambda v: _is_int(v) and low <= v <= high, accepted or f"an integer >= {low}", help, **meta)


def _flag(default: bool, help: str | None = None, **meta) -> Any:
    return _option(default, lambda v: isinstance(v, bool), "true or false", help, **meta)


def _vit_rate(help: str) -> Any:
    return _option(0.0, lambda v: _is_real(v) and 0.0 <= v <= 1.0, "a probability in [0, 1] (0: off)", help,
                   metavar="P", commands=("train",), recipe=True, vit=True)  # fmt: skip


def _vit_int(default: int, high: int, help: str, valid: Callable[[int], bool] = lambda v: True, accepted="") -> Any:
    return _option(default, lambda v: _is_int(v) and 1 <= v <= high and valid(v), accepted or f"an integer from 1 to "
                   f"{high:,}", help, metavar="N", commands=("train",), recipe=True, vit=True)  # fmt: skip


_FLOAT32 = f"at most {FLOAT32_MAX:.4g}"


@dataclass
class TrainConfig:
    """Everything that determines a run. Defaults: the lecture's run (as d2l runs it).

    The model: two hidden layers of 256, dropout 0.5 after each; SGD with learning rate 0.1,
    batch 256, 10 epochs. Each field's metadata says what it accepts (see the module's doc).
    """

    model: str = _choice("scratch", MODEL_NAMES, "the model: the lecture's scratch DropoutMLPScratch or concise "
                         "nn.Dropout MLP, plain without dropout, or the general mlp", commands=("train",),
                         recipe=True)  # fmt: skip
    dropout_impl: str = _choice("fast", DROPOUT_IMPLS, "dropout of the scratch and mlp models: droplab's fast kernel "
                                "or the lecture's readable reference", recipe=True)  # fmt: skip
    hidden: tuple[int, ...] = _option(
        (256, 256), lambda v: bool(v) and all(_is_int(h) and 1 <= h <= MAX_WIDTH for h in v),
        f"one or more layer widths, each an integer from 1 to {MAX_WIDTH:,}", "hidden layer widths",
        recipe=True, metavar="N",
    )  # fmt: skip
    dropout: tuple[float, ...] = _option(
        (0.5, 0.5), lambda v: all(_is_real(p) and 0.0 <= p <= 1.0 for p in v),  # NaN fails too
        "probabilities in [0, 1]", "dropout probability per hidden layer", recipe=True, metavar="P",
    )  # fmt: skip
    epochs: int = _int(10, 1, MAX_EPOCHS, f"an integer from 1 to {MAX_EPOCHS:,}", "epochs to train")
    batch_size: int = _int(256, 1, help="minibatch size", recipe=True)
    lr: float = _option(0.1, lambda v: _is_real(v) and 0 < v <= FLOAT32_MAX,
                        f"a number > 0 and {_FLOAT32} (the largest float32)", "learning rate", recipe=True)  # fmt: skip
    optimizer: str = _choice("sgd", OPTIMIZERS, "optimizer", recipe=True)
    momentum: float = _option(0.0, lambda v: _is_real(v) and 0.0 <= v < 1.0, "a number in [0, 1)", "SGD momentum",
                              recipe=True)  # fmt: skip
    weight_decay: float = _option(0.0, lambda v: _is_real(v) and 0.0 <= v <= FLOAT32_MAX,
                                  f"a number >= 0 and {_FLOAT32} (the largest float32)", "L2 penalty (the "
                                  "optimizer's weight decay)", recipe=True)  # fmt: skip
    seed: int = _int(0, 0, 2**63 - 1, "an integer in [0, 2**63)", "seed of the initial weights, the dropout masks "
                     "and the minibatch order")  # fmt: skip
    val_size: int = _int(5000, 1, help="training images held out for validation", commands=(*BOTH, "study"))
    split_seed: int = _int(0, 0, 2**63 - 1, "an integer in [0, 2**63)", "seed of the validation split")
    # torch's intra-op threads; None keeps torch's default. Recorded, but no part of what a run computes
    threads: int | None = _option(None, lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1",
                                  "torch threads (default: torch's)", run_only=True)  # fmt: skip
    eval_batch_size: int = _int(8192, 1)
    # model "mlp" only: other noise than dropout, normalization, input dropout, SELU (see droplab.models.MLP)
    noise: str = _choice("dropout", NOISE_KINDS, "noise after each ReLU", commands=("train",), recipe=True, mlp=True)
    norm: str = _choice("none", NORMS, "normalization before each ReLU", commands=("train",), recipe=True, mlp=True)
    input_dropout: float = _option(0.0, lambda v: _is_real(v) and 0.0 <= v < 1.0, "a probability in [0, 1) (0: off)",
                                   "dropout on the input pixels, before the first layer (0: off; the dropout "
                                   "paper's p is about 0.2)", commands=("train",), recipe=True, mlp=True,
                                   metavar="P")  # fmt: skip
    activation: str = _choice("relu", ACTIVATIONS, "the hidden layers' nonlinearity: relu, or selu with LeCun-normal "
                              "weights (self-normalizing; for noise alpha)", commands=("train",), recipe=True,
                              mlp=True)  # fmt: skip
    # > 0: max-norm constraint on every linear layer's rows, after each step
    max_norm: float = _option(0.0, lambda v: _is_real(v) and 0.0 <= v <= FLOAT32_MAX,
                              f"a number >= 0 and {_FLOAT32} (0: off)", "max-norm bound on weight rows (0: off)",
                              commands=("train",), recipe=True)  # fmt: skip
    # > 0: train on this many training images (a subset drawn with the seed)
    train_size: int = _int(0, 0, accepted="an integer >= 0 (0: all training images)",
                           help="train on this many images (0: all)", commands=("train",), recipe=True)  # fmt: skip
    # > 0: train-set metrics on this many of the training images
    eval_train_size: int = _int(0, 0, accepted="an integer >= 0 (0: all training images)")
    # learning rate: constant, onecycle or cosine (stepped per batch)
    schedule: str = _choice("constant", SCHEDULES, "learning-rate schedule", commands=("train",), recipe=True)
    dropout_schedule: str = _option("constant", is_schedule, SCHEDULE_ACCEPTED, "dropout schedule, on every dropout "
                                    "site's rate: constant; early:E, on for epochs 1 to E then off; late:E, off for "
                                    "epochs 1 to E then on; linear:E, rising per step from 0 to the rates at the end "
                                    "of epoch E", commands=("train",), metavar="SCHEDULE")  # fmt: skip
    track_activations: bool = _flag(False)  # per epoch: variance of each hidden layer's activations
    # > 0: shift each training image by up to this many pixels (random, per example)
    augment: int = _int(0, 0, 8, "an integer from 0 to 8 (pixels of random shift)",
                        "random shifts of up to N pixels (0: off)", commands=("train",), recipe=True)  # fmt: skip
    drop_last: bool = _flag(False)  # True: every step a full batch (the epoch's last partial batch is left out)
    eval_every: int = _int(1, 1, accepted="an integer >= 1 (epochs between evaluations)")  # and after the last
    # > 0: a checkpoint every this many steps too (always: after each epoch). No part of what a run computes
    checkpoint_every: int = _int(0, 0, accepted="an integer >= 0 (steps between checkpoints; 0: after each epoch "
                                 "only)", help="a checkpoint every STEPS steps too (0: after each epoch only)",
                                 commands=("train",), run_only=True, metavar="STEPS")  # fmt: skip
    precision: str = _choice("fp32", PRECISIONS, "arithmetic of the matrix products: fp32, or bf16 where the CPU "
                             "has AMX or AVX512-BF16 (weights stay fp32; elsewhere fp32, with a note)")  # fmt: skip
    select: str = _choice("last", SELECTIONS, "the weights a run ends with: the last epoch's, or the evaluated epoch's "
                          "with the highest validation accuracy (the earliest on ties), as early stopping keeps; the "
                          "summary's metrics are that epoch's, and the test set is evaluated once, after training, "
                          "on them")  # fmt: skip
    split: str = _choice("droplab", SPLITS, "droplab: train on the training split, validate on the held-out images; "
                         "d2l: as d2l's code does, train on all 60,000 training images and measure the 'validation' "
                         "metrics on the TEST set, every evaluated epoch (the test set then chooses nothing only "
                         "with select last: select best_val is refused)")  # fmt: skip
    # True: each evaluated epoch's row also holds val_acc_before_last and val_loss_before_last, measured on the
    # validation images just before the epoch's final optimizer step (no effect on what the run computes)
    eval_before_last_step: bool = _flag(False)

    # model "vit" only: the Vision Transformer's shape and its four dropout sites (see droplab.vit.ViT)
    vit_patch: int = _vit_int(7, 28, "side of the square patches (a divisor of 28)", lambda v: 28 % v == 0,
                              "a divisor of the image size 28: 1, 2, 4, 7, 14 or 28")  # fmt: skip
    vit_width: int = _vit_int(64, 2**16, "size of a token (a multiple of the heads)")
    vit_depth: int = _vit_int(4, 256, "encoder blocks")
    vit_heads: int = _vit_int(4, 2**16, "attention heads")
    vit_attention_dropout: float = _vit_rate("dropout on the attention probabilities")
    vit_projection_dropout: float = _vit_rate("dropout on the attention's output projection")
    vit_mlp_dropout: float = _vit_rate("dropout inside the MLP, after the GELU and on its output")
    vit_drop_path: float = _vit_rate("stochastic depth of the last block, rising linearly from 0 in the first")

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden) if isinstance(self.hidden, list) else self.hidden
        self.dropout = tuple(self.dropout) if isinstance(self.dropout, list) else self.dropout
        # plain has no dropout layers: record that, not the probabilities given (bad ones
        # are kept, for validate() to refuse)
        valid = all(isinstance(p, (int, float)) and 0 <= p <= 1 for p in self.dropout)
        if self.model == "plain" and valid and isinstance(self.hidden, tuple):
            self.dropout = (0.0,) * len(self.hidden)

    def validate(self) -> TrainConfig:
        """Check every field, then how they relate; raise :class:`ConfigError` naming the first bad one.

        Returns:
            the configuration itself.
        """
        for f in dataclasses.fields(self):  # each field on its own first: a relation reads only good values
            value = getattr(self, f.name)
            if not f.metadata["valid"](value):
                raise ConfigError(f.name, value, f.metadata["accepted"])
        for relation in _RELATIONS:
            relation(self)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def vit_options(self) -> dict[str, Any]:  # droplab.vit.ViT's keyword arguments: the vit_ fields, unprefixed
        return {f.name[4:]: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["vit"]}


def _one_probability_per_layer(cfg: TrainConfig) -> None:
    if cfg.model not in ("plain", "vit") and len(cfg.dropout) != len(cfg.hidden):
        raise ConfigError("dropout", cfg.dropout, f"one probability per hidden layer ({len(cfg.hidden)})")


def _model_options_need_their_model(cfg: TrainConfig) -> None:
    for model in ("mlp", "vit"):
        only = [f for f in dataclasses.fields(cfg) if f.metadata[model]]
        if cfg.model != model and any(getattr(cfg, f.name) != f.default for f in only):
            raise ConfigError("model", cfg.model, f"{model} when {' or '.join(f.name for f in only)} is set")


def _vit_shape(cfg: TrainConfig) -> None:
    for f in [f for f in dataclasses.fields(cfg) if f.name in ("hidden", "dropout", "dropout_impl")]:
        if cfg.model == "vit" and getattr(cfg, f.name) != f.default:  # the MLPs' options: the ViT has its own
            raise ConfigError(f.name, getattr(cfg, f.name), f"{f.default!r} with model vit (it has the vit_ options)")
    if cfg.vit_width % cfg.vit_heads:
        raise ConfigError("vit_width", cfg.vit_width, f"a multiple of vit_heads = {cfg.vit_heads}")


def _finite_gaussian_noise(cfg: TrainConfig) -> None:
    if cfg.noise == "gaussian" and any(p == 1.0 for p in cfg.dropout):
        accepted = "probabilities in [0, 1) for gaussian noise (p = 1: infinite variance)"
        raise ConfigError("dropout", cfg.dropout, accepted)


def _dropout_schedule_fits_the_run(cfg: TrainConfig) -> None:
    (kind, length), value = parse_schedule(cfg.dropout_schedule), cfg.dropout_schedule
    most = cfg.epochs - (kind != "linear")  # early or late at E >= epochs: dropout on, or off, all along
    if length > most:
        raise ConfigError("dropout_schedule", value, f"{kind}:E with E from 1 to {most} for epochs = {cfg.epochs} "
                          "(early or late at E >= epochs: dropout on, or off, all along)" if most else "constant or "
                          "linear:1 for epochs = 1 (early and late need 2 epochs or more)")  # fmt: skip
    if kind != "constant" and cfg.noise == "no-rescale-test-scaled":
        raise ConfigError("dropout_schedule", value, "constant with noise no-rescale-test-scaled (its output in eval "
                          "mode, (1 - p) h, would follow the schedule)")  # fmt: skip


def _no_selection_on_the_test_set(cfg: TrainConfig) -> None:
    if cfg.split == "d2l" and cfg.select != "last":  # d2l's "validation" metrics are the test set's
        raise ConfigError("select", cfg.select, "last when split is d2l (its validation metrics are measured on the "
                          "test set: selecting an epoch on them would select on the test set)")  # fmt: skip


# how fields relate, checked in this order once every field is good on its own
_RELATIONS: tuple[Callable[[TrainConfig], None], ...] = (
    _one_probability_per_layer,
    _model_options_need_their_model,
    _vit_shape,
    _finite_gaussian_noise,
    _no_selection_on_the_test_set,
    _dropout_schedule_fits_the_run,
)

RUN_ONLY = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["run_only"])
_JSON_DEFAULTS = json.loads(json.dumps(TrainConfig().to_dict()))


def with_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config``, a configuration as a dict (a checkpoint's, a study job's), in JSON values, with
    every field it lacks at its default: a configuration written before a field existed reads as
    the run it was (a new field's default keeps what runs computed before it).

    Examples::

        >>> cfg = with_defaults({"epochs": 3, "hidden": (8,)})
        >>> cfg["epochs"], cfg["hidden"], cfg["lr"]
        (3, [8], 0.1)
    """
    return {**_JSON_DEFAULTS, **json.loads(json.dumps(dict(config), default=list))}


def batches_per_epoch(cfg: TrainConfig, n: int) -> int:
    """Optimizer steps an epoch on ``n`` images takes."""
    return n // cfg.batch_size if cfg.drop_last else math.ceil(n / cfg.batch_size)


def evaluates(epoch: int, epochs: int, eval_every: int = 1) -> bool:
    """Whether a run of ``epochs`` evaluates after ``epoch``: every ``eval_every``-th, and the last."""
    return epoch % eval_every == 0 or epoch == epochs


def evaluated_epochs(epochs: int, eval_every: int = 1) -> list[int]:
    """The epochs a run of ``epochs`` evaluates after: every ``eval_every``-th, and the last.

    Examples::

        >>> evaluated_epochs(3)
        [1, 2, 3]
        >>> evaluated_epochs(7, eval_every=3)
        [3, 6, 7]
    """
    return [e for e in range(1, epochs + 1) if evaluates(e, epochs, eval_every)]


def evaluation_count(epochs: int, eval_every: int = 1) -> int:
    """``len(evaluated_epochs(epochs, eval_every))`` without the list (a plan counts many long runs).

    Examples::

        >>> evaluation_count(7, eval_every=3), len(evaluated_epochs(7, eval_every=3))
        (3, 3)
    """
    return epochs // eval_every + (epochs % eval_every != 0)


def generator(seed: int, stream: int) -> torch.Generator:
    """A generator of its own for one stream of a run's draws (``*_STREAM``), seeded from the run's seed."""
    return torch.Generator().manual_seed((seed + stream) % 2**63)
