"""The lecture's models: multilayer perceptrons with dropout after each hidden ReLU.

Linear -> ReLU -> Dropout(p1) -> Linear -> ReLU -> Dropout(p2) -> Linear

``DropoutMLPScratch`` calls the functional dropout itself, only while ``self.training``;
``DropoutMLP`` is the concise version built from the stock ``torch.nn.Dropout`` layer,
whose train/eval switch turns it off. ``MLP`` is the general form (any depth), and the
plain MLP of the comparison is an ``MLP`` without dropout layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _torch_module

from . import functional, fused
from . import nn as dnn
from .data import NUM_CLASSES as NUM_OUTPUTS
from .data import NUM_INPUTS
from .noise import NOISE_KINDS, DropConnectLinear, noise_layer

__all__ = ["DropoutMLPScratch", "DropoutMLP", "MLP", "MODEL_NAMES", "NORMS", "build_model", "noise_active"]

MODEL_NAMES = ("scratch", "concise", "plain", "mlp")


def _check_lengths(hidden: Sequence[int], dropout: Sequence[float]) -> None:
    if len(hidden) != len(dropout):
        raise ValueError(
            f"need one dropout probability per hidden layer: got {len(hidden)} hidden "
            f"sizes {tuple(hidden)} and {len(dropout)} probabilities {tuple(dropout)}"
        )


class DropoutMLPScratch(nn.Module):
    """Two hidden layers; dropout written out in ``forward``, active only while training."""

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


class MLP(nn.Module):
    """An MLP of any depth: ``Linear -> [Norm] -> ReLU -> [noise(p_i)]`` per hidden layer, then
    ``Linear``.

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
    ) -> None:
        super().__init__()
        _check_lengths(hidden, dropout)
        layers = {"scratch": lambda p: dnn.Dropout(p, impl=dropout_impl), "torch": nn.Dropout}
        if impl not in layers:
            raise ValueError(f"impl must be one of {sorted(layers)}, got {impl!r}")
        if noise not in NOISE_KINDS:
            raise ValueError(f"noise must be one of {', '.join(NOISE_KINDS)}; got {noise!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
        modules: list[nn.Module] = [nn.Flatten()]
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
            modules.append(nn.ReLU())
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

    @property
    def fusable_at(self) -> frozenset[int]:
        """Where ``Linear -> ReLU -> fast Dropout`` starts in ``net``: the hidden layers trained
        as one fused step (:func:`droplab.fused.linear_relu_dropout`)."""
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
) -> nn.Module:
    """The model the CLI calls ``name``: ``scratch``, ``concise``, ``plain`` or ``mlp``.

    With two hidden layers, ``scratch`` and ``concise`` are the lecture's classes; other depths
    use :class:`MLP`. ``plain`` ignores ``dropout``. ``mlp`` is the general :class:`MLP`, the
    only one with other ``noise`` or a ``norm``. For one seed, all start from the same
    weights (their linear layers are created in the same order). ``dropout_impl`` picks the
    dropout function of ``scratch`` and ``mlp``: ``"fast"`` (default) or the lecture's
    ``"reference"``.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"model must be one of {', '.join(MODEL_NAMES)}; got {name!r}")
    if name != "mlp" and (noise, norm) != ("dropout", "none"):
        raise ValueError(f"noise and norm other than dropout/none need model 'mlp', got model {name!r}")
    if name == "plain":
        return MLP(hidden, [0.0] * len(hidden))
    _check_lengths(hidden, dropout)
    functional.check_impl(dropout_impl)
    if name == "mlp":
        return MLP(hidden, dropout, impl="scratch", dropout_impl=dropout_impl, noise=noise, norm=norm)
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
