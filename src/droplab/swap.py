"""Put droplab's dropout in any PyTorch model, in place, with one call: :func:`swap_dropout`.

Every ``torch.nn.Dropout``, ``Dropout1d``, ``Dropout2d``, ``Dropout3d`` and ``AlphaDropout`` of a model becomes
droplab's (:mod:`droplab.nn`: the counter-based mask, nothing saved for backward, the same mask
for a seed on every device), with its ``p``, ``inplace`` and train/eval mode; ``reverse=True``
puts torch's back. The report names what was replaced and each dropout site a module swap cannot
reach, with the reason: a float rate used inside ``forward`` (``nn.MultiheadAttention``'s
``dropout``, ``scaled_dot_product_attention(dropout_p=...)``, a functional call), a dropout layer
whose ``forward`` only reads its rate (``self.dropout.p``, as Hugging Face's attention modules do:
the layer is swapped, but the dropout is applied elsewhere), or a layer droplab has no
counter-based version of.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

from torch import nn

from . import nn as dnn

__all__ = ["SwapReport", "swap_dropout"]

# torch's layer -> droplab's (exact types: a subclass of torch's has its own forward)
TO_DROPLAB = {nn.Dropout: dnn.Dropout, nn.Dropout1d: dnn.Dropout1d, nn.Dropout2d: dnn.Dropout2d,
              nn.Dropout3d: dnn.Dropout3d, nn.AlphaDropout: dnn.AlphaDropout}  # fmt: skip
TO_TORCH = {ours: theirs for theirs, ours in TO_DROPLAB.items()}
_FUNCTIONAL = re.compile(r"\b(F|functional|nn\.functional)\.(dropout\w*|alpha_dropout|feature_alpha_dropout)\(|"
                         r"dropout_p\s*=")  # fmt: skip
_READS_RATE = re.compile(r"\bself\.(\w+)\.p\b")  # a forward that reads its dropout layer's rate, not calling it


@dataclass
class SwapReport:
    """What :func:`swap_dropout` did: the modules it replaced (by name) and the dropout sites it
    could not reach, ``(name, reason)``."""

    replaced: list[str] = field(default_factory=list)
    unreachable: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{len(self.replaced)} dropout layer(s) replaced"]
        lines += [f"not reached: {name}: {why}" for name, why in self.unreachable]
        return "\n".join(lines)


def _swapped(module: nn.Module, reverse: bool) -> nn.Module | None:
    """The replacement of ``module`` (None: none), with its p, inplace and mode."""
    table = TO_TORCH if reverse else TO_DROPLAB
    kind = table.get(type(module))
    if kind is None or (reverse and getattr(module, "broadcast_dims", ()) or getattr(module, "impl", "fast") != "fast"):
        return None
    new = kind(module.p, module.inplace)
    return new.train(module.training)


def _unreachable(name: str, module: nn.Module, reverse: bool) -> str | None:
    """Why the dropout site ``module`` is not swapped, or None when it holds none."""
    if reverse:
        if isinstance(module, tuple(TO_TORCH)) and _swapped(module, True) is None:
            return "droplab's layer with broadcast_dims or impl='reference' has no torch equivalent"
        return None
    if isinstance(module, nn.MultiheadAttention) and module.dropout > 0:
        return (f"nn.MultiheadAttention applies its dropout (p={module.dropout:g}) to the attention weights "
                "inside its forward (F.multi_head_attention_forward), not through a module")  # fmt: skip
    if isinstance(module, nn.FeatureAlphaDropout):
        return f"{type(module).__name__}: droplab has no counter-based version of it; left as torch's"
    if (isinstance(module, nn.modules.dropout._DropoutNd) and type(module) not in TO_DROPLAB
            and not isinstance(module, tuple(TO_TORCH))):
        base = next(c for c in type(module).__mro__ if c.__module__ == nn.modules.dropout.__name__)
        return f"{type(module).__name__}, a subclass of torch's {base.__name__}, not the class itself: left as it is"
    if type(module) in TO_DROPLAB or isinstance(module, tuple(TO_TORCH)):
        return None
    try:
        source = inspect.getsource(type(module).forward)
    except (OSError, TypeError):
        return None
    for child in dict.fromkeys(_READS_RATE.findall(source)):
        calls = re.search(rf"\bself\.{child}\(", source)  # the layer itself runs too: it is swapped
        if isinstance(getattr(module, child, None), tuple(TO_DROPLAB)) and not calls:
            return (f"{type(module).__name__}.forward reads the rate of its layer '{child}' (self.{child}.p) and "
                    "applies dropout itself (e.g. passes it to an attention function): the layer is swapped, "
                    "the dropout it stands for is not")  # fmt: skip
    if _FUNCTIONAL.search(source):
        return f"{type(module).__name__}.forward calls dropout as a function (or passes dropout_p): not a module"
    return None


def swap_dropout(model: nn.Module, reverse: bool = False) -> SwapReport:
    """Replace, in place, every torch dropout layer of ``model`` with droplab's (``reverse``:
    droplab's with torch's), keeping ``p``, ``inplace`` and the train/eval mode; return the
    :class:`SwapReport`. The model's parameters and buffers are untouched, so in eval mode its
    outputs are unchanged.

    Examples::

        >>> import torch
        >>> from droplab import swap_dropout
        >>> layer = torch.nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, dropout=0.1)
        >>> report = swap_dropout(layer)
        >>> report.replaced, [name for name, why in report.unreachable]
        (['dropout', 'dropout1', 'dropout2'], ['self_attn'])
        >>> report.unreachable[0][1][:62]
        'nn.MultiheadAttention applies its dropout (p=0.1) to the atten'
        >>> type(layer.dropout1).__module__
        'droplab.nn'
        >>> swap_dropout(layer, reverse=True).replaced
        ['dropout', 'dropout1', 'dropout2']
        >>> type(layer.dropout1)
        <class 'torch.nn.modules.dropout.Dropout'>
    """
    report = SwapReport()
    for name, module in list(model.named_modules()):
        if (why := _unreachable(name, module, reverse)) is not None:
            report.unreachable.append((name or type(module).__name__, why))
        for child_name, child in list(module.named_children()):
            new = _swapped(child, reverse)
            if new is not None:
                setattr(module, child_name, new)
                report.replaced.append(f"{name}.{child_name}" if name else child_name)
    return report
