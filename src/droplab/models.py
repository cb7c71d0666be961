"""The lecture's models: multilayer perceptrons with dropout after each hidden ReLU.

Linear -> ReLU -> Dropout(p1) -> Linear -> ReLU -> Dropout(p2) -> Linear

``DropoutMLPScratch`` calls the functional dropout itself, only while ``self.training``;
``DropoutMLP`` is the concise version built from the stock ``torch.nn.Dropout`` layer,
whose train/eval switch turns it off. ``MLP`` is the general form (any depth, other noise,
normalization, input dropout, SELU), and the plain MLP of the comparison is an ``MLP`` without
dropout layers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _torch_module

from . import functional, fused
from . import nn as dnn
from .data import NUM_CLASSES as NUM_OUTPUTS
from .data import NUM_INPUTS
from .noise import NOISE_KINDS, DropConnectLinear, noise_layer
from .vit import ViT

__all__ = ["DropoutMLPScratch", "DropoutMLP", "MLP", "MODEL_NAMES", "NORMS", "ACTIVATIONS", "build_model",
           "noise_active"]  # fmt: skip

MODEL_NAMES = ("scratch", "concise", "plain", "mlp", "vit")


def _check_lengths(hidden: Sequence[int], dropout: Sequence[float]) -> None:
    if len(hidden) != len(dropout):
        raise ValueError(
            f"need one dropout probability per hidden layer: got {len(hidden)} hidden "
            f"sizes {tuple(hidden)} and {len(dropout)} probabilities {tuple(dropout)}"
        )


class DropoutMLPScratch(nn.Module):
    """Two hidden layers; dropout written out in ``forward``, active only while training."""

    rate_attributes = ("dropout_1", "dropout_2")  # its dropout rates (droplab.train.dropout_schedule scales them)

    def __init__(
        self,
        num_outputs: int,
        num_hiddens_1: int,
        num_hiddens_2: int,
        dropout_1: float,
        dropout_2: float,
        num_inputs: int = NUM_INPUTS,
        impl: str = "fast",
    ) -> None:
        super().__init__()
        self.dropout_1 = functional.check_probability(dropout_1)
        self.dropout_2 = functional.check_probability(dropout_2)
        self.impl = functional.check_impl(impl)  # "fast" kernel or the lecture's "reference"
        self.lin1 = nn.Linear(num_inputs, num_hiddens_1)
        self.lin2 = nn.Linear(num_hiddens_1, num_hiddens_2)
        self.lin3 = nn.Linear(num_hiddens_2, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        h1 = self._hidden(self.lin1, x.reshape(x.shape[0], -1), self.dropout_1)
        h2 = self._hidden(self.lin2, h1, self.dropout_2)
        return self.lin3(h2)

    def _hidden(self, linear: nn.Linear, x: Tensor, p: float) -> Tensor:
        """``relu(linear(x))``, then dropout while training: the fast one as one fused step
        (:func:`droplab.fused.linear_relu_dropout`, the same numbers), the reference as written."""
        if self.training and self.impl == "fast" and not hooked(linear):
            return fused.linear_relu_dropout(x, linear.weight, linear.bias, p)
        h = torch.relu(linear(x))
        return functional.IMPLEMENTATIONS[self.impl](h, p) if self.training else h


class DropoutMLP(nn.Module):
    """Two hidden layers; the concise version with ``torch.nn.Dropout`` in an ``nn.Sequential``."""

    def __init__(
        self,
        num_outputs: int,
        num_hiddens_1: int,
        num_hiddens_2: int,  # parallel: the lecture's arguments, as DropoutMLPScratch takes them
        dropout_1: float,
        dropout_2: float,
        num_inputs: int = NUM_INPUTS,
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(num_inputs, num_hiddens_1),
            nn.ReLU(),
            nn.Dropout(dropout_1),
            nn.Linear(num_hiddens_1, num_hiddens_2),
            nn.ReLU(),
            nn.Dropout(dropout_2),
            nn.Linear(num_hiddens_2, num_outputs),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


NORMS = ("none", "batch", "layer")
ACTIVATIONS = {"relu": nn.ReLU, "selu": nn.SELU}  # the hidden layers' nonlinearity (MLP's ``activation``)


class MLP(nn.Module):
    """An MLP of any depth: ``[Dropout(input_dropout)]``, then ``Linear -> [Norm] -> ReLU (or
    SELU) -> [noise(p_i)]`` per hidden layer, then ``Linear``.

    Args:
        hidden: widths of the hidden layers.
        dropout: one probability (noise strength) per hidden layer; ``p = 0``: no noise there.
        impl: ``"scratch"`` for :class:`droplab.nn.Dropout`, ``"torch"`` for ``torch.nn.Dropout``.
        dropout_impl: with ``impl="scratch"``: ``"fast"`` or ``"reference"`` (see ``droplab.nn.Dropout``).
        noise: ``"dropout"`` (default) or another kind of :data:`droplab.noise.NOISE_KINDS`;
            ``"dropconnect"`` drops the weights of the linear layer after hidden layer i with
            probability ``p_i`` instead of its activations.
        norm: ``"none"``, ``"batch"`` (``BatchNorm1d``) or ``"layer"`` (``LayerNorm``) after
            each hidden linear layer, before the ReLU.
        input_dropout: probability in [0, 1) of dropping each input pixel while training, before
            the first linear layer (the dropout paper's input dropout, p ~ 0.2): plain inverted
            dropout, the same layer as the hidden ones' dropout whatever ``noise`` is; 0: no layer.
        activation: ``"relu"`` or ``"selu"``; SELU initializes every linear layer's weights
            LeCun-normal (std ``1/sqrt(fan_in)``) and its biases 0, as self-normalizing networks
            need (Klambauer et al. 2017; alpha dropout, ``noise="alpha"``, is made for them).
        num_inputs, num_outputs: sizes of input and output (Fashion-MNIST: 784 and 10).
    """

    def __init__(
        self,
        hidden: Sequence[int] = (256, 256),
        dropout: Sequence[float] = (0.5, 0.5),
        impl: str = "scratch",
        num_inputs: int = NUM_INPUTS,
        num_outputs: int = NUM_OUTPUTS,
        dropout_impl: str = "fast",
        noise: str = "dropout",
        norm: str = "none",
        input_dropout: float = 0.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        _check_lengths(hidden, dropout)
        layers = {"scratch": lambda p: dnn.Dropout(p, impl=dropout_impl), "torch": nn.Dropout}
        if impl not in layers:
            raise ValueError(f"impl must be one of {sorted(layers)}, got {impl!r}")
        for name, value, accepted in (("noise", noise, NOISE_KINDS), ("norm", norm, NORMS),
                                      ("activation", activation, ACTIVATIONS)):  # fmt: skip
            if value not in accepted:
                raise ValueError(f"{name} must be one of {', '.join(accepted)}; got {value!r}")
        if functional.check_probability(input_dropout) == 1.0:
            raise ValueError("input_dropout must be in [0, 1): p = 1 would drop every input pixel")
        modules: list[nn.Module] = [nn.Flatten()]
        if input_dropout > 0:  # none at 0: the model (and its parameters' names) as without the option
            modules.append(layers[impl](input_dropout))
        width, before = num_inputs, 0.0  # before: the dropconnect p of the next linear layer
        for size, p in zip(hidden, dropout):
            functional.check_probability(p)
            if noise == "dropconnect" and before > 0:
                modules.append(DropConnectLinear(width, size, before))
            else:
                modules.append(nn.Linear(width, size))
            if norm == "batch":
                modules.append(nn.BatchNorm1d(size))
            elif norm == "layer":
                modules.append(nn.LayerNorm(size))
            modules.append(ACTIVATIONS[activation]())
            if p > 0 and noise == "dropout":
                modules.append(layers[impl](p))
            elif p > 0 and noise != "dropconnect":
                modules.append(noise_layer(noise, p))
            width, before = size, (p if noise == "dropconnect" else 0.0)
        if before > 0:
            modules.append(DropConnectLinear(width, num_outputs, before))
        else:
            modules.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*modules)
        if activation == "selu":
            _lecun_normal_(self.net)

    @property
    def fusable_at(self) -> frozenset[int]:
        """Where ``Linear -> ReLU -> fast Dropout`` starts in ``net``: the hidden layers trained
        as one fused step (:func:`droplab.fused.linear_relu_dropout`). None with SELU; the input
        dropout is no such triple and runs as its own layer."""
        modules = list(self.net)
        return frozenset(i for i in range(len(modules) - 2) if _fusable_triple(*modules[i : i + 3]))

    def forward(self, x: Tensor) -> Tensor:
        fusable = self.fusable_at if self.training and not (hooked(self.net) or hooked(self)) else ()
        if not fusable:
            return self.net(x)
        # Linear -> ReLU -> fast Dropout as one fused step (droplab.fused: the same numbers),
        # unless a hook watches one of the three
        modules, i = list(self.net), 0
        while i < len(modules):
            if i in fusable and modules[i + 2].training and not any(map(hooked, modules[i : i + 3])):
                linear, dropout = modules[i], modules[i + 2]
                x, i = fused.linear_relu_dropout(x, linear.weight, linear.bias, dropout.p), i + 3
            else:
                x, i = modules[i](x), i + 1
        return x


@torch.no_grad()
def _lecun_normal_(net: nn.Module) -> None:
    """Every linear layer of ``net``, in order: weights from N(0, 1/fan_in), biases 0 (the
    initialization of self-normalizing networks). Drawn from torch's global generator."""
    for m in net.modules():
        if isinstance(m, nn.Linear):
            m.weight.normal_(0.0, 1.0 / math.sqrt(m.in_features))
            if m.bias is not None:
                m.bias.zero_()


def _fusable_triple(linear: nn.Module, relu: nn.Module, dropout: nn.Module) -> bool:
    return (type(linear) is nn.Linear and type(relu) is nn.ReLU and type(dropout) is dnn.Dropout
            and dropout.impl == "fast")  # fmt: skip


def hooked(module: nn.Module) -> bool:
    """Whether a hook would see ``module`` run, or its parameters' gradients arrive: its own
    forward or backward hooks, global ones, or hooks on its parameters."""
    base = _torch_module
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks or base._global_forward_hooks or base._global_forward_pre_hooks
                or base._global_backward_hooks or base._global_backward_pre_hooks
                or any(p._backward_hooks or getattr(p, "_post_accumulate_grad_hooks", None)
                       for p in module.parameters(recurse=False)))  # fmt: skip


def build_model(
    name: str,
    hidden: Sequence[int],
    dropout: Sequence[float],
    dropout_impl: str = "fast",
    noise: str = "dropout",
    norm: str = "none",
    input_dropout: float = 0.0,
    activation: str = "relu",
    vit: Mapping[str, Any] | None = None,
) -> nn.Module:
    """The model the CLI calls ``name``: ``scratch``, ``concise``, ``plain``, ``mlp`` or ``vit``.

    With two hidden layers, ``scratch`` and ``concise`` are the lecture's classes; other depths
    use :class:`MLP`. ``plain`` ignores ``dropout``. ``mlp`` is the general :class:`MLP`, the
    only one with other ``noise``, a ``norm``, ``input_dropout`` or another ``activation``. For
    one seed, all start from the same weights (their linear layers are created in the same
    order; SELU then redraws them LeCun-normal). ``dropout_impl`` picks the
    dropout function of ``scratch`` and ``mlp``: ``"fast"`` (default) or the lecture's
    ``"reference"``. ``vit`` is :class:`droplab.vit.ViT` with the keyword arguments ``vit``
    (its own dropout sites; ``hidden``, ``dropout`` and ``dropout_impl`` are the MLPs').
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}; got {name!r}")
    if name != "mlp" and (noise, norm, input_dropout, activation) != ("dropout", "none", 0.0, "relu"):
        raise ValueError(f"noise, norm, input_dropout and activation other than dropout, none, 0 and relu need model "
                         f"'mlp', got model {name!r}")  # fmt: skip
    if name == "vit":
        return ViT(**(vit or {}))
    if vit:
        raise ValueError(f"ViT options need model 'vit', got model {name!r}")
    if name == "plain":
        return MLP(hidden, [0.0] * len(hidden))
    _check_lengths(hidden, dropout)
    functional.check_impl(dropout_impl)
    if name == "mlp":
        return MLP(hidden, dropout, impl="scratch", dropout_impl=dropout_impl, noise=noise, norm=norm,
                   input_dropout=input_dropout, activation=activation)  # fmt: skip
    if name == "concise":
        if len(hidden) == 2:
            return DropoutMLP(NUM_OUTPUTS, hidden[0], hidden[1], dropout[0], dropout[1])
        return MLP(hidden, dropout, impl="torch")
    if len(hidden) == 2:
        return DropoutMLPScratch(NUM_OUTPUTS, *hidden, *dropout, impl=dropout_impl)
    return MLP(hidden, dropout, impl="scratch", dropout_impl=dropout_impl)


@contextlib.contextmanager
def noise_active(model: nn.Module) -> Iterator[nn.Module]:
    """Training mode for the noise layers only: dropout draws its masks, batch norm keeps its
    running statistics (eval mode). The model's mode is restored on leaving.

    Examples::

        >>> model = MLP([8], [0.5], norm="batch").eval()
        >>> with noise_active(model):
        ...     model.training, model.net[2].training
        (True, False)
        >>> model.training
        False
    """
    was = model.training
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    try:
        yield model
    finally:
        model.train(was)
