r"""droplab's attention dropout inside a Hugging Face transformers model: :func:`use_droplab_attention`.

transformers' attention modules (BERT's ``BertSelfAttention``, Llama's and Qwen2's ``*Attention``, ...)
hold a dropout layer whose rate they only read (``self.dropout.p``, ``self.attention_dropout``) and pass
to an *attention function* chosen by name (``config._attn_implementation``: ``"eager"``, ``"sdpa"``, ...),
which applies torch's dropout to the attention probabilities: :func:`droplab.swap_dropout` cannot reach
that site. transformers' ``AttentionInterface`` takes a function under a new name;
:func:`use_droplab_attention` registers :func:`attention_forward` as ``"droplab"`` and switches a model
to it: the attention probabilities are then dropped with droplab's counter-based mask, regenerated in
backward (:func:`droplab.functional.scaled_dot_product_attention`: no mask and no ``L x S`` tensor kept
for backward). Together with :func:`droplab.swap_dropout` (the other dropout layers), no dropout mask
of the model is saved for backward.

transformers is imported only by :func:`use_droplab_attention`; this module imports without it.
"""

from __future__ import annotations

from torch import Tensor, nn

from .attention import scaled_dot_product_attention

__all__ = ["NAME", "attention_forward", "use_droplab_attention"]

NAME = "droplab"  # the name in transformers' AttentionInterface and AttentionMaskInterface
# keyword arguments transformers may pass that change the attention's result, which this function does not compute
REFUSED = {
    "softcap": "a soft cap of the attention scores (tanh)",
    "position_bias": "an additive position bias (T5-like models)",
    "s_aux": "attention sinks",
    "sinks": "attention sinks",
}


def _refuse(kwargs: dict) -> None:
    """Raise ``ValueError`` for a keyword argument whose feature :func:`attention_forward` does not compute."""
    for name, what in REFUSED.items():
        if kwargs.get(name) is not None:
            raise ValueError(f"droplab's attention does not compute {what}: got {name}={type(kwargs[name]).__name__}, "
                             f"accepted: {name}=None; use attn_implementation 'eager' or 'sdpa' for this model")
    if kwargs.get("output_attentions"):
        raise ValueError("droplab's attention does not return the attention weights: got output_attentions=True, "
                         "accepted: False; use attn_implementation 'eager' to get them")


def attention_forward(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    r"""transformers' attention function (the convention of its ``sdpa_attention_forward``) computed
    by :func:`droplab.functional.scaled_dot_product_attention`: the same result as ``"sdpa"`` at
    ``dropout = 0``; above, the attention probabilities dropped with droplab's counter mask
    (``keep_mask(seed, (batch, heads, L, S), dropout)``, one seed drawn per call from torch's global
    generator), nothing of size ``L x S`` saved for backward.

    As transformers' ``"sdpa"``: grouped-query attention when ``module.num_key_value_groups > 1`` (the
    key and value heads shared, ``enable_gqa``); causal when no mask is given, ``L > 1`` and
    ``is_causal`` (default: ``module.is_causal``, else ``True``) says so, the keys past ``L`` then cut
    (a prefill with an empty static cache); ``dropout`` applied as given (the modules pass 0 in eval).
    Other keyword arguments (``position_ids``, ``sliding_window``, already in the mask, ...) are ignored.

    Args:
        module: the attention module calling (its ``num_key_value_groups`` and ``is_causal`` are read).
        query: :math:`(N, H, L, E)`.
        key: :math:`(N, H_k, S, E)`, :math:`H_k` dividing :math:`H`.
        value: :math:`(N, H_k, S, E_v)`.
        attention_mask: bool (``True`` takes part) or additive float, of the query's dtype,
            broadcastable to :math:`(N, H, L, S)`; or ``None``.
        dropout: the attention probabilities' dropout rate, in [0, 1].
        scaling: the factor of :math:`Q K^T`. Default: :math:`1/\sqrt{E}`.
        is_causal: whether the attention is causal where no mask is given.

    Returns:
        ``(output, None)``: the output :math:`(N, L, H, E_v)`, contiguous; no attention weights.

    Raises:
        ValueError: for ``softcap``, ``position_bias``, ``s_aux`` or ``sinks`` not ``None`` and for
            ``output_attentions=True``, which it does not compute.

    Examples::

        >>> import torch
        >>> from types import SimpleNamespace
        >>> from droplab.hf import attention_forward
        >>> module = SimpleNamespace(num_key_value_groups=2, is_causal=True)  # what it reads of the module
        >>> q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
        >>> out, weights = attention_forward(module, q, k, v, None, dropout=0.1)
        >>> out.shape, weights  # (batch, L, heads, E)
        (torch.Size([2, 5, 4, 8]), None)
        >>> reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        >>> torch.allclose(attention_forward(module, q, k, v, None)[0], reference.transpose(1, 2), atol=1e-6)
        True
    """
    _refuse(kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    q_length = query.shape[-2]
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    is_causal = bool(q_length > 1 and attention_mask is None and is_causal)
    if is_causal and key.shape[-2] > q_length:  # as transformers' sdpa: a prefill into an empty static cache
        key, value = key[..., :q_length, :], value[..., :q_length, :]
    out = scaled_dot_product_attention(query, key, value, attention_mask, dropout, is_causal, scaling,
                                       enable_gqa=groups > 1)  # fmt: skip
    return out.transpose(1, 2).contiguous(), None


def use_droplab_attention(model: nn.Module) -> str:
    r"""Switch a transformers model's attention to :func:`attention_forward`, in place; return the
    implementation it used before (``"sdpa"``, ``"eager"``, ...), to switch back with
    ``model.set_attn_implementation(previous)``.

    Registers :func:`attention_forward` under the name ``"droplab"`` (:data:`NAME`) in transformers'
    ``AttentionInterface`` and its ``sdpa_mask`` under the same name in ``AttentionMaskInterface`` (a
    bool mask, ``None`` where the causal flag does; without it a custom name gets no mask: padding would
    be ignored), then calls ``model.set_attn_implementation("droplab")``, which switches the model and
    its sub-models. Once registered, the name works where transformers takes one (a config's
    ``attn_implementation``, ``from_config(config, attn_implementation="droplab")``). Combine with
    :func:`droplab.swap_dropout` for the model's other dropout layers.

    Args:
        model: a ``transformers.PreTrainedModel`` whose attention modules call transformers'
            ``AttentionInterface`` (BERT, Llama, Qwen2, ...).

    Returns:
        The name of the previous attention implementation.

    Raises:
        ImportError: transformers cannot be imported.
        TypeError: ``model`` is not a ``transformers.PreTrainedModel``.
        ValueError: the model does not take an attention implementation set after its creation.

    Examples::

        >>> import pytest
        >>> transformers = pytest.importorskip("transformers")  # this example needs it
        >>> import torch
        >>> from droplab.hf import use_droplab_attention
        >>> config = transformers.BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
        ...                                  intermediate_size=64, vocab_size=50, attn_implementation="sdpa")
        >>> model = transformers.BertModel(config).eval()
        >>> ids = torch.randint(1, 50, (2, 6))
        >>> before = model(input_ids=ids).last_hidden_state
        >>> use_droplab_attention(model)  # the previous implementation
        'sdpa'
        >>> model.config._attn_implementation
        'droplab'
        >>> torch.allclose(model(input_ids=ids).last_hidden_state, before, atol=1e-5)  # no dropout in eval
        True
        >>> model.set_attn_implementation("sdpa")  # back
    """
    transformers = _transformers(model)
    if not isinstance(model, transformers.PreTrainedModel):
        raise TypeError(f"use_droplab_attention expects a transformers PreTrainedModel, got {type(model).__name__}")
    if not model._can_set_attn_implementation():
        raise ValueError(f"{type(model).__name__} does not take an attention implementation after its creation (its "
                         "attention modules do not call transformers' AttentionInterface); accepted: models that do")
    from transformers.masking_utils import sdpa_mask

    for interface, function in ((transformers.AttentionInterface, attention_forward),
                                (transformers.AttentionMaskInterface, sdpa_mask)):  # fmt: skip
        if interface._global_mapping.get(NAME) is not function:  # registered once
            interface.register(NAME, function)
    previous = model.config._attn_implementation
    model.set_attn_implementation(NAME)
    if model.config._attn_implementation != NAME:
        raise ValueError(f"{type(model).__name__} kept its attention implementation {previous!r} when set to {NAME!r}")
    return previous


def _transformers(model: object):
    """transformers, imported; ``ImportError`` naming the model's type where it cannot be."""
    try:
        import transformers
    except ImportError as err:
        raise ImportError(f"use_droplab_attention needs transformers, which cannot be imported ({err}); got a "
                          f"{type(model).__name__}; install transformers (pip install transformers)") from err
    return transformers
