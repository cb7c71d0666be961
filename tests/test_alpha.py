"""droplab.functional.alpha_dropout and droplab.nn.AlphaDropout: torch's alpha dropout (its values for a
given mask, its defaults and edge cases) with droplab's counter mask, nothing saved for backward."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as TF

from droplab import nn as dnn
from droplab import swap_dropout
from droplab.alpha import ALPHA
from droplab.functional import alpha_dropout, draw_seed, keep_mask
from droplab.memory import saved_bytes


def _a(p: float) -> float:
    return 1.0 / math.sqrt((ALPHA * ALPHA * p + 1) * (1 - p))


def _reference(x, p, seed):
    """Torch's alpha dropout formula (``x * noise + b``) with the keep-mask of ``seed``, in autograd."""
    noise = keep_mask(seed, x.shape, p).to(x.dtype)
    a = _a(p)
    return x * (noise * a) + ((noise - 1) * (ALPHA * a) + ALPHA * a * p)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_and_gradients_are_torchs_formula_with_the_keep_mask(dtype):
    x = torch.randn(7, 1031, dtype=dtype, requires_grad=True)
    g = torch.Generator().manual_seed(5)
    seed = draw_seed(torch.Generator().manual_seed(5))
    out = alpha_dropout(x, 0.3, training=True, generator=g)
    ref = _reference(x, 0.3, seed)
    assert torch.equal(out, ref)
    w = torch.randn_like(out)
    (gx,) = torch.autograd.grad((out * w).sum(), x)
    (gr,) = torch.autograd.grad((ref * w).sum(), x)
    assert torch.equal(gx, gr)


def test_moments_are_kept_and_the_kept_fraction_is_binomial():
    n, p = 1_000_000, 0.2
    x = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = alpha_dropout(x, p, training=True, generator=torch.Generator().manual_seed(1))
    dropped_value = (0.0 - 1) * (ALPHA * _a(p)) + ALPHA * _a(p) * p  # a (p - 1) alpha, in the formula's order
    kept = (y != dropped_value).sum().item()  # a kept a x + b equals it only where x = -alpha exactly
    assert abs(kept - n * (1 - p)) <= 5 * math.sqrt(n * p * (1 - p))
    # mean 0 and variance 1 for a standard normal input: 5 standard errors of the sample moments
    assert abs(y.mean().item()) <= 5 / math.sqrt(n)
    fourth = ((y - y.mean()) ** 4).mean().item()  # the sample variance's standard error: sqrt((mu4 - sigma^4) / n)
    assert abs(y.var().item() - 1) <= 5 * math.sqrt((fourth - 1) / n)


def test_defaults_and_edge_cases_are_torchs():
    x = torch.randn(4, 5)
    assert alpha_dropout(x) is x  # torch's function defaults to training=False
    assert alpha_dropout(x, 0.0, training=True) is x
    assert torch.equal(alpha_dropout(x, 1.0, training=True), TF.alpha_dropout(x, 1.0, training=True))
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        alpha_dropout(x, 1.5, training=True)
    y = x.clone()
    out = alpha_dropout(y, 0.5, training=True, inplace=True)
    assert out is y and not torch.equal(y, x)


def test_gradcheck_gradgradcheck_forward_ad_and_nothing_saved():
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)

    def fn(t):
        torch.manual_seed(2)
        return alpha_dropout(t, 0.4, training=True)

    assert torch.autograd.gradcheck(fn, (x,)) and torch.autograd.gradgradcheck(fn, (x,))
    import torch.autograd.forward_ad as fwAD

    t = torch.randn_like(x)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(fn(fwAD.make_dual(x.detach(), t))).tangent
    torch.manual_seed(2)
    seed = draw_seed()
    assert torch.allclose(tangent, t * keep_mask(seed, x.shape, 0.4) * _a(0.4))
    big = torch.randn(1024, 1024, requires_grad=True)
    assert saved_bytes(lambda v: alpha_dropout(v, 0.1, training=True), big) == 0
    assert saved_bytes(lambda v: TF.alpha_dropout(v, 0.1, training=True), big) >= 4 * big.numel()


def test_the_layer_is_torchs_and_swap_replaces_torchs_alpha_dropout_both_ways():
    layer = dnn.AlphaDropout(0.2)
    assert isinstance(layer, torch.nn.AlphaDropout) and repr(layer) == "AlphaDropout(p=0.2, inplace=False)"
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.SELU(), torch.nn.AlphaDropout(0.1))
    x = torch.randn(8, 4)
    before = model.eval()(x)
    report = swap_dropout(model.train())
    assert report.replaced == ["2"] and type(model[2]) is dnn.AlphaDropout and model[2].p == 0.1
    assert torch.equal(model.eval()(x), before)
    torch.manual_seed(4)
    a = model.train()(x)
    torch.manual_seed(4)
    assert torch.equal(model(x), a)
    assert swap_dropout(model, reverse=True).replaced == ["2"] and type(model[2]) is torch.nn.AlphaDropout


def test_under_compile_and_on_meta_tensors():
    f = torch.compile(lambda t: alpha_dropout(t, 0.5, training=True), fullgraph=True, backend="aot_eager")
    x = torch.randn(64, 32)
    torch.manual_seed(6)
    compiled = f(x)
    torch.manual_seed(6)
    assert torch.equal(compiled, alpha_dropout(x, 0.5, training=True))
    meta = alpha_dropout(torch.empty(3, 4, device="meta"), 0.5, training=True)
    assert meta.is_meta and meta.shape == (3, 4)


def test_the_layer_never_writes_into_its_input_as_torchs_layer():
    x = torch.randn(4, 6)
    for layer in (torch.nn.AlphaDropout(0.5, inplace=True), dnn.AlphaDropout(0.5, inplace=True)):
        y = x.clone()
        out = layer.train()(y)
        assert torch.equal(y, x) and out is not y


def test_a_graph_traced_from_fake_tensors_draws_a_new_mask_per_call():
    from torch.fx.experimental.proxy_tensor import make_fx

    x = torch.randn(64, 64)
    gm = make_fx(lambda t: alpha_dropout(t, 0.5, training=True), tracing_mode="fake")(x)
    assert not torch.equal(gm(x), gm(x))
