r"""Dropout as a layer: :class:`Dropout`, a drop-in for :class:`torch.nn.Dropout` over
:mod:`droplab.functional`, and ``_NoiseLayer``, the base of every droplab layer whose noise
has a strength ``p`` in [0, 1] (the others are in :mod:`droplab.noise`).

Dropout: A Simple Way to Prevent Neural Networks from Overfitting
    N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, JMLR 15 (2014).
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.fx import Proxy

from . import functional as F

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "DropPath"]


class _NoiseLayer(nn.Module):
    r"""Base of droplab's noise layers of strength ``p``, as ``_DropoutNd`` is of torch's
    dropout layers: ``p`` is checked once, here, and shown once, by :meth:`extra_repr`.

    A subclass writes ``forward`` and its own docs. It narrows the accepted ``p`` by overriding
    :meth:`check_p`, and lists in ``_shown`` the attributes its repr shows.
    """

    _shown: tuple[str, ...] = ("p",)

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = self.check_p(p)

    @staticmethod
    def check_p(p: float) -> float:
        """``p`` as a float; ``ValueError`` naming it unless it lies in [0, 1]."""
        return F.check_probability(p)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in self._shown)


class _Transformable:
    """What droplab's dropout layers share under torch's graph transforms.

    - ``torch.fx.symbolic_trace`` records each as one ``call_module`` node, as it records torch's
      own dropout layers: the traced graph runs the layer, so it follows ``train()``/``eval()`` and
      draws a new mask per call (:meth:`_fx_node`).
    - ``torch.jit.script`` is refused with a message (:meth:`__prepare_scriptable__`): the kernel
      is Python code TorchScript cannot compile.
    """

    def __prepare_scriptable__(self):
        raise NotImplementedError(
            f"torch.jit.script cannot compile droplab's {type(self).__name__}: its kernel runs from Python. "
            "Use torch.compile or torch.export instead, or torch.jit.trace of the model in eval() mode; "
            "droplab.swap_dropout(model, reverse=True) puts torch's own dropout layers back in place of "
            "droplab's Dropout, Dropout1d, Dropout2d, Dropout3d and AlphaDropout (DropPath has no torch equivalent)"
        )

    def _fx_node(self, x: Tensor) -> Proxy | None:
        """Under ``torch.fx.symbolic_trace`` of a model holding this layer (``x`` a ``Proxy``), its
        ``call_module`` node; otherwise (a tensor, or the layer traced as the root) None."""
        if not isinstance(x, Proxy):
            return None
        try:
            path = x.tracer.path_of_module(self)
        except NameError:  # not a submodule of the traced root: the functional call is recorded
            return None
        return x.tracer.create_proxy("call_module", path, (x,), {}) if path else None


class Dropout(_Transformable, nn.Dropout):
    r"""Inverted dropout; a drop-in for :class:`torch.nn.Dropout`, and an instance of it (code
    that finds dropout layers by ``isinstance`` finds this one).

    While training, each element of the input is zeroed with probability :math:`p`, and the
    ones kept are scaled by :math:`1/(1-p)`:

    .. math::
        h' = \begin{cases} 0 & \text{with probability } p, \\
                           \dfrac{h}{1-p} & \text{otherwise,} \end{cases}
        \qquad \mathbb{E}[h'] = h.

    Every call draws a new mask, so each minibatch trains another thinned network. In
    ``eval()`` mode the layer is the identity: thanks to the scale, the next layer sees
    activations of the same expected size as in training. (Without it they would be
    :math:`(1-p)\,h` in training and :math:`h` at test time; :class:`droplab.noise.NoRescaleDropout`
    keeps that mismatch on purpose.)

    Args:
        p: probability of an element to be zeroed, in [0, 1]. Default: 0.5.
        inplace: if ``True``, write the result into the input. Default: ``False``.
        impl: ``"fast"`` (:func:`droplab.functional.dropout`, the counter-based kernel whose
            mask is regenerated in backward, not stored) or ``"reference"``
            (:func:`droplab.functional.dropout_reference`, the lecture's code). Default: ``"fast"``.
        broadcast_dims: dimensions along which one keep decision is shared (Flax's meaning;
            :mod:`droplab.structured`); ``"fast"`` only. Default: none.

    Shape:
        - Input: :math:`(*)`, any shape, a floating dtype.
        - Output: :math:`(*)`, the same shape.

    Examples::

        >>> import torch
        >>> from droplab.nn import Dropout
        >>> m = Dropout(p=0.5)
        >>> m
        Dropout(p=0.5, inplace=False)
        >>> _ = torch.manual_seed(0)
        >>> m(torch.ones(2, 8))  # dropped: 0; kept: 1 / (1 - p) = 2
        tensor([[0., 0., 2., 2., 2., 2., 2., 0.],
                [2., 2., 2., 2., 2., 2., 0., 2.]])
        >>> x = torch.ones(2, 8)
        >>> m.eval()(x) is x  # eval mode: the identity
        True
        >>> Dropout(p=0.5, impl="reference")
        Dropout(p=0.5, inplace=False, impl='reference')
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, impl: str = "fast",
                 broadcast_dims: tuple[int, ...] = ()) -> None:  # fmt: skip
        F.check_probability(p)  # a p of another type than a real number: TypeError naming it
        super().__init__(p, inplace)  # keeps p as given, as torch's repr shows it
        self.impl = F.check_impl(impl)
        self.broadcast_dims = tuple(broadcast_dims)
        if self.broadcast_dims and impl != "fast":
            raise ValueError(f"broadcast_dims {self.broadcast_dims} needs impl 'fast' (the counter-based mask), "
                             f"not {impl!r}")  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        if (node := self._fx_node(x)) is not None:
            return node
        if self.impl == "reference":
            out = F.dropout_reference(x, self.p, training=self.training)
            return x.copy_(out) if self.inplace and out is not x else out
        return F.dropout(x, self.p, training=self.training, inplace=self.inplace, broadcast_dims=self.broadcast_dims)

    def extra_repr(self) -> str:
        extra = f", impl={self.impl!r}" if self.impl != "fast" else ""  # torch's repr when fast
        return super().extra_repr() + extra + (f", broadcast_dims={self.broadcast_dims}" if self.broadcast_dims else "")


def _checked(p: float) -> float:
    """``p`` as given, once :func:`droplab.functional.check_probability` accepts it."""
    F.check_probability(p)
    return p


class _TorchSignature(_Transformable):
    """A layer with torch's ``(p=0.5, inplace=False)`` whose forward is its ``_function(x, p, training,
    inplace)``: droplab's channel dropouts and alpha dropout."""

    _function = None

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__(_checked(p), inplace)

    def forward(self, x: Tensor) -> Tensor:
        if (node := self._fx_node(x)) is not None:
            return node
        return self._function(x, self.p, self.training, self.inplace)


class Dropout1d(_TorchSignature, nn.Dropout1d):
    r"""Channel dropout, a drop-in for :class:`torch.nn.Dropout1d`: each channel of an
    ``(N, C, L)`` or ``(C, L)`` input is zeroed whole with probability :math:`p`, the others
    scaled by :math:`1/(1-p)`; droplab's counter-based mask, one bit per (sample, channel),
    nothing saved for backward (:func:`droplab.functional.dropout1d`).

    Examples::

        >>> import torch
        >>> from droplab.nn import Dropout1d
        >>> _ = torch.manual_seed(0)
        >>> Dropout1d(0.5)(torch.ones(1, 3, 4))  # whole channels kept (x 2) or zeroed
        tensor([[[0., 0., 0., 0.],
                 [0., 0., 0., 0.],
                 [2., 2., 2., 2.]]])
    """

    _function = staticmethod(F.dropout1d)


class Dropout2d(_TorchSignature, nn.Dropout2d):
    r"""Channel dropout on ``(N, C, H, W)``, a drop-in for :class:`torch.nn.Dropout2d` (its
    warnings and its legacy reading of 3-D inputs included): :func:`droplab.functional.dropout2d`."""

    _function = staticmethod(F.dropout2d)


class Dropout3d(_TorchSignature, nn.Dropout3d):
    r"""Channel dropout on ``(N, C, D, H, W)`` or ``(C, D, H, W)``, a drop-in for
    :class:`torch.nn.Dropout3d`: :func:`droplab.functional.dropout3d`."""

    _function = staticmethod(F.dropout3d)


class AlphaDropout(_TorchSignature, nn.AlphaDropout):
    r"""Alpha dropout for SELU networks, a drop-in for :class:`torch.nn.AlphaDropout`: dropped
    elements take SELU's saturation value and an affine map keeps mean 0 and variance 1
    (Klambauer et al. 2017); droplab's counter-based mask, regenerated in backward:
    :func:`droplab.functional.alpha_dropout`.

    (:class:`droplab.noise.AlphaDropout`, the noise kind ``alpha`` of droplab's MLPs and studies,
    keeps torch's mask, so that recorded studies reproduce.)
    """

    def forward(self, x: Tensor) -> Tensor:
        if (node := self._fx_node(x)) is not None:
            return node
        return F.alpha_dropout(x, self.p, self.training)  # as torch's layer: never in place, whatever inplace says


class DropPath(_Transformable, _NoiseLayer):
    r"""Stochastic depth on a residual branch, as timm's ``DropPath``: in training, each sample
    (index of dim 0) is dropped whole with probability :math:`p` and the others scaled by
    :math:`1/(1-p)` (unless ``scale_by_keep`` is false); the identity in eval.
    :func:`droplab.functional.drop_path`.

    Examples::

        >>> from droplab.nn import DropPath
        >>> DropPath(0.1)
        DropPath(p=0.1, scale_by_keep=True)
    """

    _shown = ("p", "scale_by_keep")

    def __init__(self, p: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__(p)
        self.scale_by_keep = scale_by_keep

    def forward(self, x: Tensor) -> Tensor:
        if (node := self._fx_node(x)) is not None:
            return node
        return F.drop_path(x, self.p, self.training, scale_by_keep=self.scale_by_keep)
