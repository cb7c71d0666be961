"""The training step of droplab's MLPs written out: forward and backward without autograd.

For the lecture's ``DropoutMLPScratch`` and the ``MLP`` of ``Linear -> ReLU [-> Dropout]``
hidden layers (droplab's fast dropout, no normalization, no other noise, no input dropout, ReLU
not SELU, no hooks), in float32 or float64 on CPU at fp32 precision, :class:`WrittenOut` computes what
``F.cross_entropy(model(x), y).backward()`` computes, with the same operations in the same
order, so the numbers are autograd's bit for bit (``tests/test_step.py``):

- forward, per hidden layer: ``h = addmm(b, x, W^T)``, then ReLU and dropout in one pass in
  place (:func:`droplab.kernels.cpu.relu_dropout_`; ``relu_`` where p = 0); the output layer's
  ``addmm``; ``log_softmax`` and the mean negative log-likelihood;
- backward: ``nll_loss_backward`` and ``_log_softmax_backward_data`` (what cross-entropy's
  backward runs), then per layer ``dW = g^T h_in``, ``db = sum(g)``, ``dh_in = g W``, and
  through ReLU and dropout ``g / (1 - p)`` where the saved output is positive, else 0.

What it saves against autograd: the graph (a node, its bookkeeping and a Python call per
operation), the gradients' fresh allocations (each is written into the same buffer every
step), and the ReLU outputs autograd keeps. Anything else trains through autograd:
:func:`written_out` returns None for it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .. import functional
from ..kernels import cpu
from ..models import MLP, DropoutMLPScratch, hooked
from ..nn import Dropout

__all__ = ["WrittenOut", "written_out"]

_MEAN = 1  # torch's Reduction::Mean
_IGNORE = -100  # cross_entropy's default ignore_index


class WrittenOut:
    """The written-out step of one model: its linear layers in order, for each hidden one a
    function giving the rate of the dropout after its ReLU now (0: none, or not training), and
    ``modules``, a function giving the modules the plan was made from as the model holds them now."""

    def __init__(self, linears: list[nn.Linear], rates: list[Callable[[], float]],
                 modules: Callable[[], list[nn.Module]]) -> None:  # fmt: skip
        self.linears, self.rates, self.modules = linears, rates, modules
        self.planned = modules()
        self.saved: list[Tensor] = []

    def applies(self, x: Tensor) -> bool:
        """Whether this step computes what autograd would for input ``x`` now: the same modules
        as planned, no hook watching one of them, no rate of 1 (autograd's ``where`` path)."""
        now = self.modules()
        return (x.is_cpu and x.dim() == 2 and x.dtype == self.linears[0].weight.dtype
                and len(now) == len(self.planned) and all(a is b for a, b in zip(now, self.planned))
                and not any(map(hooked, now)) and all(rate() < 1.0 for rate in self.rates))  # fmt: skip

    @torch.no_grad()  # no graph: the kernels write in place, behind autograd's back
    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The mean cross-entropy of the model on ``x``, ``y`` (a 0-dim tensor, no graph); keeps
        what :meth:`backward` needs."""
        threads = torch.get_num_threads()
        self.saved, self.y, h = [x], y, x
        for linear, rate in zip(self.linears, self.rates):
            h = torch.addmm(linear.bias, h, linear.weight.t())
            if (p := rate()) > 0.0:  # one seed per dropout layer, drawn as functional.dropout draws it
                cpu.relu_dropout_(h, functional.draw_seed(), p, threads)
            else:
                h.relu_()
            self.saved.append(h)
        last = self.linears[-1]
        self.log_probs = torch._log_softmax(torch.addmm(last.bias, h, last.weight.t()), 1, False)
        loss, self.total_weight = torch.ops.aten.nll_loss_forward(self.log_probs, y, None, _MEAN, _IGNORE)
        return loss

    @torch.no_grad()
    def backward(self) -> None:
        """Write the gradients of the last :meth:`loss` into the parameters' ``.grad``."""
        one = torch.ones((), dtype=self.log_probs.dtype)
        g = torch.ops.aten.nll_loss_backward(one, self.log_probs, self.y, None, _MEAN, _IGNORE, self.total_weight)
        g = torch._log_softmax_backward_data(g, self.log_probs, 1, self.log_probs.dtype)
        threads = torch.get_num_threads()
        for k in range(len(self.linears) - 1, -1, -1):
            linear, h_in = self.linears[k], self.saved[k]
            _into(linear.weight, torch.mm, g.t(), h_in)  # as autograd's addmm backward orders them
            _into(linear.bias, torch.sum, g, 0)
            if k == 0:  # the images need no gradient
                break
            g = g.mm(linear.weight)
            if (p := self.rates[k - 1]()) > 0.0:
                cpu.relu_dropout_backward(g, h_in, p, threads, into=g)
            else:
                g = torch.ops.aten.threshold_backward(g, h_in, 0)
        self.saved = []


def _into(param: Tensor, op: Callable[..., Tensor], *args) -> None:
    """``param.grad = op(*args)``, written into the buffer of the last step's gradient where there is one."""
    if param.grad is None:
        param.grad = op(*args)
    else:
        op(*args, out=param.grad)


def written_out(model: nn.Module, precision: str) -> WrittenOut | None:
    """The written-out step of ``model``, or None where it trains through autograd."""
    if precision != "fp32":
        return None
    plans = {DropoutMLPScratch: _plan_scratch, MLP: _plan_mlp}
    plan = plans[type(model)](model) if type(model) in plans else None
    if plan is None or any(linear.bias is None for linear in plan[0]):
        return None
    return WrittenOut(*plan)


def _plan_scratch(model: DropoutMLPScratch):
    if model.impl != "fast":
        return None
    rates = [lambda: model.dropout_1 if model.training else 0.0, lambda: model.dropout_2 if model.training else 0.0]
    return [model.lin1, model.lin2, model.lin3], rates, lambda: [model, model.lin1, model.lin2, model.lin3]


def _plan_mlp(model: MLP):
    """Flatten, then (Linear, ReLU, [fast Dropout]) per hidden layer, then Linear; else None (among
    others: input dropout after the Flatten, SELU instead of ReLU, a norm, other noise)."""
    modules = list(model.net)
    if type(modules[0]) is not nn.Flatten or type(modules[-1]) is not nn.Linear:
        return None
    linears, rates, i = [], [], 1
    while i < len(modules) - 1:
        if type(modules[i]) is not nn.Linear or type(modules[i + 1]) is not nn.ReLU:
            return None
        linears.append(modules[i])
        drop = modules[i + 2]
        if type(drop) is Dropout and drop.impl == "fast":
            rates.append(lambda d=drop: d.p if d.training else 0.0)
            i += 3
        else:
            rates.append(lambda: 0.0)
            i += 2
    return linears + [modules[-1]], rates, lambda: [model, model.net, *model.net]
