r"""A small Vision Transformer for Fashion-MNIST, with droplab's dropout at the four sites
Transformers use it (Dosovitskiy et al. 2021; timm's ``VisionTransformer``).

The image is cut into non-overlapping ``patch x patch`` squares, each flattened and mapped by one
linear layer to a token of ``width`` values, plus a learned position embedding. ``depth``
pre-LayerNorm encoder blocks follow:

.. math::
    h &= x + \operatorname{droppath}\bigl(\operatorname{dropout}_{p_o}(W_o\,
         \operatorname{attention}_{p_a}(\operatorname{LN}(x)))\bigr) \\
    y &= h + \operatorname{droppath}\bigl(\operatorname{dropout}_{p_m}(W_2\,
         \operatorname{dropout}_{p_m}(\operatorname{GELU}(W_1 \operatorname{LN}(h))))\bigr)

then a final LayerNorm, the mean over the tokens and a linear head. The four dropout sites,
each off at rate 0 and in eval mode, all with droplab's counter-based masks (nothing saved for
backward but seeds):

- ``attention_dropout`` (:math:`p_a`): on the attention probabilities, inside
  :func:`droplab.functional.scaled_dot_product_attention`;
- ``projection_dropout`` (:math:`p_o`): on the attention's output projection, fused with the
  residual add (:func:`droplab.functional.dropout_add`);
- ``mlp_dropout`` (:math:`p_m`): inside the MLP after the GELU (:class:`droplab.nn.Dropout`) and
  on its output, fused with the residual add, as timm's ``Mlp`` drops both with one rate;
- ``drop_path``: stochastic depth on each residual branch (:class:`droplab.nn.DropPath`), rising
  linearly from 0 in the first block to ``drop_path`` in the last, as timm's ``drop_path_rate``.

Dropout and DropPath are both per-element scalings, so they commute: the branch is dropped whole
first, then the fused pass applies the elementwise mask and adds the residual. Mean pooling
instead of a class token: one token less, and as good on small ViTs (Beyer, Zhai & Kolesnikov,
"Better plain ViT baselines for ImageNet-1k", 2022); no dropout on the embedding (timm's
``pos_drop``, off by default there too).

``ViT(impl="torch")`` is the same network with torch's dropout at the four sites, each saving its
mask for backward, as timm's ViT (for ``benchmarks/transformer_memory.py``): SDPA's ``dropout_p``
(:func:`torch.nn.functional.scaled_dot_product_attention`), ``residual + F.dropout(x)``,
:class:`torch.nn.Dropout` and timm's ``drop_path`` (one ``bernoulli_`` draw per sample). Its
parameters and their names are droplab's: a ``state_dict`` loads into either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import nn as dnn
from .attention import scaled_dot_product_attention
from .data import IMAGE_SHAPE
from .data import NUM_CLASSES as NUM_OUTPUTS
from .functional import check_probability
from .residual import dropout_add

__all__ = ["ViT", "check_vit_shape"]

IMPLS = ("droplab", "torch")


def check_vit_shape(patch: int, width: int, heads: int, image: int = IMAGE_SHAPE[0]) -> None:
    """Raise ``ValueError`` unless ``patch`` divides ``image`` and ``heads`` divides ``width``.

    Examples::

        >>> check_vit_shape(7, 64, 4)
        >>> check_vit_shape(5, 64, 4)
        Traceback (most recent call last):
        ...
        ValueError: patch = 5 must divide the image size 28 (1, 2, 4, 7, 14 or 28)
    """
    if patch < 1 or image % patch:
        divisors = [str(d) for d in range(1, image + 1) if image % d == 0]
        raise ValueError(f"patch = {patch} must divide the image size {image} ({', '.join(divisors[:-1])} or "
                         f"{divisors[-1]})")  # fmt: skip
    if heads < 1 or width % heads:
        raise ValueError(f"width = {width} must be a multiple of heads = {heads}")


class _TorchDropPath(nn.Module):
    """timm's ``DropPath`` with torch's RNG: a ``bernoulli_`` draw per sample, scaled by ``1 / keep``,
    multiplied in (the draw saved for backward); the identity at rate 0 and in eval."""

    rate_attributes = ("p",)  # its dropout rate (droplab.train.dropout_schedule scales it)

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = check_probability(p)

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * (mask.div_(keep) if keep > 0.0 else mask)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _ResidualDropout(nn.Module):
    """``residual + dropout(x, p)``: droplab's fused :func:`~droplab.functional.dropout_add`, or torch's
    ``residual + F.dropout(x, p)``."""

    rate_attributes = ("p",)  # its dropout rate (droplab.train.dropout_schedule scales it)

    def __init__(self, p: float, impl: str) -> None:
        super().__init__()
        self.p, self.impl = check_probability(p), impl

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        if self.impl == "torch":
            return residual + F.dropout(x, self.p, self.training)
        return dropout_add(x, residual, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _Attention(nn.Module):
    """Multi-head self-attention: one linear layer for queries, keys and values, droplab's SDPA
    (torch's with ``impl="torch"``)."""

    rate_attributes = ("p",)  # its dropout rate (droplab.train.dropout_schedule scales it)

    def __init__(self, width: int, heads: int, p: float, impl: str) -> None:
        super().__init__()
        self.heads, self.p, self.impl = heads, check_probability(p), impl
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        n, tokens, width = x.shape
        q, k, v = self.qkv(x).view(n, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        sdpa = F.scaled_dot_product_attention if self.impl == "torch" else scaled_dot_product_attention
        a = sdpa(q, k, v, dropout_p=self.p if self.training else 0.0)
        return self.proj(a.transpose(1, 2).reshape(n, tokens, width))


class _Block(nn.Module):
    """A pre-LayerNorm encoder block: attention, then an MLP, each on a residual branch."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, attention_dropout: float,
                 projection_dropout: float, mlp_dropout: float, drop_path: float, impl: str) -> None:  # fmt: skip
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1, self.attn = nn.LayerNorm(width), _Attention(width, heads, attention_dropout, impl)
        self.norm2 = nn.LayerNorm(width)
        dropout, path = (nn.Dropout, _TorchDropPath) if impl == "torch" else (dnn.Dropout, dnn.DropPath)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), dropout(mlp_dropout), nn.Linear(hidden, width))
        self.drop_path = path(drop_path)
        self.proj_drop = _ResidualDropout(projection_dropout, impl)
        self.mlp_drop = _ResidualDropout(mlp_dropout, impl)

    @property
    def projection_dropout(self) -> float:  # the rate in effect (a dropout schedule may scale it)
        return self.proj_drop.p

    @property
    def mlp_dropout(self) -> float:
        return self.mlp_drop.p

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj_drop(self.drop_path(self.attn(self.norm1(x))), x)
        return self.mlp_drop(self.drop_path(self.mlp(self.norm2(x))), x)


class ViT(nn.Module):
    r"""A small pre-LayerNorm Vision Transformer; see the module's doc for the blocks and the
    four dropout sites.

    Args:
        patch: side of the square patches; must divide ``image``. Default: 7 (16 tokens).
        width: size of a token; a multiple of ``heads``. depth: encoder blocks. heads: attention
            heads. mlp_ratio: the MLP's hidden size over ``width``.
        classes: outputs of the head. image: side of the square, one-channel input image.
        attention_dropout: rate on the attention probabilities.
        projection_dropout: rate on the attention's output projection, before the residual add.
        mlp_dropout: rate after the MLP's GELU and on its output, before the residual add.
        drop_path: stochastic depth of the last block's branches; block ``i`` of ``depth`` uses
            ``drop_path * i / (depth - 1)`` (0 in the first; a single block: ``drop_path``).
        impl: ``"droplab"`` (default): droplab's dropout at the four sites, no mask saved;
            ``"torch"``: torch's, as timm's ViT (see the module's doc).

    Shape:
        - Input: :math:`(N, \text{image}^2)` (flattened, as droplab's data) or
          :math:`(N, [1,] \text{image}, \text{image})`. Output: :math:`(N, \text{classes})`.

    Examples::

        >>> import torch
        >>> from droplab.vit import ViT
        >>> model = ViT(width=32, depth=2, heads=2, attention_dropout=0.1, drop_path=0.1)
        >>> model(torch.rand(5, 784)).shape
        torch.Size([5, 10])
        >>> [round(b.drop_path.p, 2) for b in model.blocks]
        [0.0, 0.1]
        >>> x = torch.rand(3, 784)
        >>> model.eval()(x).equal(model(x))  # every site off in eval mode
        True
    """

    def __init__(self, patch: int = 7, width: int = 64, depth: int = 4, heads: int = 4, mlp_ratio: float = 2,
                 classes: int = NUM_OUTPUTS, image: int = IMAGE_SHAPE[0], attention_dropout: float = 0.0,
                 projection_dropout: float = 0.0, mlp_dropout: float = 0.0, drop_path: float = 0.0,
                 impl: str = "droplab") -> None:  # fmt: skip
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"ViT impl must be 'droplab' or 'torch'; got {impl!r}")
        check_vit_shape(patch, width, heads, image)
        if depth < 1:
            raise ValueError(f"depth = {depth} must be at least 1")
        self.patch, self.image = patch, image
        check_probability(drop_path)
        tokens = (image // patch) ** 2
        self.embed = nn.Linear(patch * patch, width)
        self.position = nn.Parameter(torch.empty(1, tokens, width))
        nn.init.trunc_normal_(self.position, std=0.02)
        rates = [drop_path * i / (depth - 1) if depth > 1 else drop_path for i in range(depth)]
        self.blocks = nn.ModuleList(
            _Block(width, heads, mlp_ratio, attention_dropout, projection_dropout, mlp_dropout, r, impl) for r in rates
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def hidden_readers(self) -> list[nn.Linear]:
        """The layer that reads each block's MLP hidden activations (its GELU outputs, after the MLP's
        dropout in training): what :func:`droplab.train.metrics.activation_variances` measures."""
        return [block.mlp[3] for block in self.blocks]

    def patches(self, x: Tensor) -> Tensor:
        """The images ``x`` as rows of flattened patches, :math:`(N, \\text{tokens}, \\text{patch}^2)`,
        in row-major order of the patches."""
        k = self.image // self.patch
        x = x.reshape(x.shape[0], k, self.patch, k, self.patch)
        return x.permute(0, 1, 3, 2, 4).reshape(x.shape[0], k * k, self.patch * self.patch)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(self.patches(x)) + self.position
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h).mean(dim=1))
