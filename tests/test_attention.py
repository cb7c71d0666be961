"""droplab.functional.scaled_dot_product_attention: torch's function at p = 0, the composition
``dropout(softmax(...)) @ v`` with droplab's counter mask above it (values and gradients), and
autograd keeping neither the mask nor anything of the attention matrix's size."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as TF

from droplab import attention
from droplab.functional import draw_seed, keep_mask, scaled_dot_product_attention

SDPA = scaled_dot_product_attention


def _qkv(shape_q, shape_k, ev=None, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    *batch_k, s, e = shape_k
    q = torch.randn(shape_q, dtype=dtype, generator=g, requires_grad=True)
    k = torch.randn(shape_k, dtype=dtype, generator=g, requires_grad=True)
    v = torch.randn((*batch_k, s, ev or e), dtype=dtype, generator=g, requires_grad=True)
    return q, k, v


def reference(q, k, v, seed, p, mask=None, causal=False, scale=None, groups=1):
    """The composition written out with autograd: softmax, the keep-mask of ``seed``, ``@ v``."""
    if groups > 1:
        k, v = k.repeat_interleave(groups, -3), v.repeat_interleave(groups, -3)
    s = q @ k.transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if causal:
        mask = torch.ones(s.shape[-2:], dtype=torch.bool).tril()
    if mask is not None:
        s = s.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else s + mask
    probs = torch.softmax(s, dim=-1)
    return (probs * keep_mask(seed, probs.shape, p) / (1 - p)) @ v


def _call(q, k, v, p, torch_seed=1234, **kw):
    """SDPA after ``torch.manual_seed(torch_seed)``, and the droplab seed that call drew."""
    torch.manual_seed(torch_seed)
    seed = draw_seed()
    torch.manual_seed(torch_seed)
    return SDPA(q, k, v, dropout_p=p, **kw), seed


CASES = {  # name: (q shape, k shape, keyword arguments, groups)
    "plain": ((2, 3, 5, 4), (2, 3, 6, 4), {}, 1),
    "2-D": ((5, 4), (7, 4), {}, 1),
    "3 batch dims": ((2, 2, 2, 4, 3), (2, 2, 2, 4, 3), {}, 1),
    "broadcast batch": ((2, 3, 5, 4), (1, 3, 6, 4), {}, 1),
    "causal": ((2, 3, 5, 4), (2, 3, 5, 4), {"is_causal": True}, 1),
    "causal L<S": ((2, 2, 4, 4), (2, 2, 6, 4), {"is_causal": True}, 1),
    "scale": ((2, 3, 5, 4), (2, 3, 6, 4), {"scale": 0.3}, 1),
    "gqa": ((2, 6, 5, 4), (2, 2, 6, 4), {"enable_gqa": True}, 3),
}


def _masks(rows, cols):
    g = torch.Generator().manual_seed(5)
    bool_mask = torch.rand(rows, cols, generator=g) > 0.3
    bool_mask[:, 0] = True  # no fully masked row: the reference's softmax would give NaN there
    return {"bool mask": bool_mask, "float mask": torch.randn(2, 1, rows, cols, dtype=torch.float64, generator=g)}


def _case(name):
    if name in CASES:
        shape_q, shape_k, kw, groups = CASES[name]
        return _qkv(shape_q, shape_k, ev=3), kw, groups
    return _qkv((2, 3, 5, 4), (2, 3, 6, 4), ev=3), {"attn_mask": _masks(5, 6)[name]}, 1


@pytest.mark.parametrize("name", [*CASES, *_masks(5, 6)])
def test_at_p_0_it_is_torchs_function(name):
    (q, k, v), kw, _ = _case(name)
    torch.testing.assert_close(SDPA(q, k, v, **kw), TF.scaled_dot_product_attention(q, k, v, **kw), rtol=0, atol=0)


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("name", [*CASES, *_masks(5, 6)])
def test_values_and_gradients_are_the_reference_compositions(name, p):
    (q, k, v), kw, groups = _case(name)
    out, seed = _call(q, k, v, p, **kw)
    ref = reference(q, k, v, seed, p, kw.get("attn_mask"), kw.get("is_causal", False), kw.get("scale"), groups)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, (q, k, v), grad), torch.autograd.grad(ref, (q, k, v), grad),
                               rtol=1e-10, atol=1e-12)  # fmt: skip


def test_keeping_the_probabilities_instead_gives_the_same_numbers(monkeypatch):
    q, k, v = _qkv((2, 3, 5, 4), (2, 3, 6, 4))
    out, seed = _call(q, k, v, 0.3, is_causal=True)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    monkeypatch.setattr(attention, "KEEP_PROBS", True)
    again, _ = _call(q, k, v, 0.3, is_causal=True)
    torch.testing.assert_close(again, out, rtol=0, atol=0)
    torch.testing.assert_close(torch.autograd.grad(again.sum(), (q, k, v)), grads, rtol=1e-14, atol=1e-14)


def test_a_float_masks_gradient_is_the_scores_gradient():
    q, k, v = _qkv((2, 3, 5, 4), (2, 3, 6, 4))
    mask = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    out, seed = _call(q, k, v, 0.2, attn_mask=mask)
    ref = reference(q, k, v, seed, 0.2, mask)
    torch.testing.assert_close(torch.autograd.grad(out.sum(), mask), torch.autograd.grad(ref.sum(), mask))


@pytest.mark.parametrize("kw", [{}, {"is_causal": True}, {"enable_gqa": True}])
def test_gradcheck_in_float64(kw):
    q, k, v = _qkv((1, 2, 3, 2), (1, 1 if kw.get("enable_gqa") else 2, 3, 2))
    mask = torch.randn(3, 3, dtype=torch.float64, requires_grad=True) if not kw else None

    def fn(q, k, v, mask):
        torch.manual_seed(3)  # the same mask on every call
        return SDPA(q, k, v, mask, dropout_p=0.4, **kw)

    assert torch.autograd.gradcheck(fn, (q, k, v, mask))


def test_reproducible_for_a_seed_and_the_generator_is_used():
    q, k, v = _qkv((2, 3, 8, 4), (2, 3, 8, 4))
    a, _ = _call(q, k, v, 0.5, torch_seed=1)
    b, _ = _call(q, k, v, 0.5, torch_seed=1)
    c, _ = _call(q, k, v, 0.5, torch_seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(SDPA(q, k, v, dropout_p=0.5, generator=g1), SDPA(q, k, v, dropout_p=0.5, generator=g2))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_kept_fraction_is_binomial(p):
    # q = k = 0: P is uniform 1/S; v = identity: the output is dropout(P) itself
    n, s = 64, 256
    q, k = torch.zeros(4, n, 8), torch.zeros(4, s, 8)
    out = SDPA(q, k, torch.eye(s).expand(4, s, s), dropout_p=p)
    kept = (out != 0).sum().item()
    total = out.numel()
    assert abs(kept - total * (1 - p)) < 5 * math.sqrt(total * p * (1 - p))
    torch.testing.assert_close(out[out != 0], torch.full((kept,), 1 / s / (1 - p)))


def test_a_fully_masked_row_gives_zeros_and_zero_gradients_as_torchs():
    q, k, v = _qkv((1, 2, 3, 4), (1, 2, 5, 4))
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    out = SDPA(q, k, v, mask, dropout_p=0.5)
    assert torch.equal(out[:, :, 1], torch.zeros_like(out[:, :, 1]))
    assert torch.equal(TF.scaled_dot_product_attention(q, k, v, mask, 0.5)[:, :, 1], out[:, :, 1])
    (gq,) = torch.autograd.grad(out.sum(), q)
    assert torch.isfinite(gq).all() and torch.equal(gq[:, :, 1], torch.zeros_like(gq[:, :, 1]))


def test_p_1_drops_everything():
    q, k, v = _qkv((2, 3, 4), (2, 3, 4))
    out = SDPA(q, k, v, dropout_p=1.0)
    assert torch.equal(out, torch.zeros_like(out))
    assert all(torch.equal(g, torch.zeros_like(g)) for g in torch.autograd.grad(out.sum(), (q, k, v)))


@pytest.mark.parametrize("shapes", [((2, 0, 4), (2, 3, 4), 4), ((1, 3, 0), (1, 3, 0), 2)])
def test_empty_inputs_give_torchs_shapes(shapes):
    q, k = torch.randn(shapes[0], requires_grad=True), torch.randn(shapes[1], requires_grad=True)
    v = torch.randn(*shapes[1][:-1], shapes[2], requires_grad=True)
    out = SDPA(q, k, v, dropout_p=0.5)
    assert out.shape == TF.scaled_dot_product_attention(q, k, v, dropout_p=0.5).shape and out.isfinite().all()
    out.sum().backward()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_is_computed_in_float32(dtype):
    q, k, v = _qkv((2, 3, 5, 8), (2, 3, 6, 8), dtype=torch.float32)
    lo = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
    out, seed = _call(*lo, 0.25)
    wide = reference(*(t.float() for t in lo), seed, 0.25)
    assert out.dtype == dtype
    torch.testing.assert_close(out, wide.to(dtype))
    grads = torch.autograd.grad(out.sum(), lo)
    assert [g.dtype for g in grads] == [dtype] * 3


def _saved(fn, *args):
    """(shape, dtype, bytes) of each tensor autograd saves while ``fn(*args)`` runs."""
    saved = []

    def pack(t):
        saved.append((tuple(t.shape), t.dtype, t.numel() * t.element_size()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return saved


def test_autograd_keeps_no_mask_and_nothing_of_the_attention_matrixs_size():
    q, k, v = _qkv((2, 4, 64, 16), (2, 4, 64, 16), dtype=torch.float32)
    ours = _saved(lambda *t: SDPA(*t, dropout_p=0.1, is_causal=True), q, k, v)
    theirs = _saved(lambda *t: TF.scaled_dot_product_attention(*t, dropout_p=0.1, is_causal=True), q, k, v)
    assert all(dtype != torch.bool for _, dtype, _ in ours)
    assert all(shape[-2:] != (64, 64) for shape, _, _ in ours), ours  # no P, no mask, no dropout(P)
    # torch's CPU math path keeps P, its float mask and dropout(P), each 2*4*64*64 floats
    assert sum(shape[-2:] == (64, 64) for shape, _, _ in theirs) >= 2
    assert sum(b for *_, b in ours) < sum(b for *_, b in theirs) / 2


def test_the_function_is_found_in_droplab_functional():
    import droplab.functional

    assert droplab.functional.scaled_dot_product_attention is attention.scaled_dot_product_attention
    assert "scaled_dot_product_attention" in droplab.functional.__all__


BAD = [  # (arguments, keyword arguments, exception, words the message holds)
    (((2, 3, 4), (2, 3, 4)), {"dropout_p": 1.5}, ValueError, "1.5"),
    (((2, 3, 4), (2, 3, 4)), {"dropout_p": -0.1}, ValueError, "-0.1"),
    (((2, 3, 4), (2, 3, 5)), {"dropout_p": 0.1}, ValueError, "(2, 3, 5)"),
    (((2, 3, 4), (2, 3, 5)), {}, ValueError, "(..., S, E)"),
    (((4,), (4,)), {"dropout_p": 0.1}, ValueError, "at least 2-D"),
    (((2, 3, 3, 4), (3, 3, 3, 4)), {"dropout_p": 0.1}, ValueError, "do not broadcast"),
    (((2, 4, 3, 4), (2, 3, 3, 4)), {"dropout_p": 0.1, "enable_gqa": True}, ValueError, "dividing the query heads"),
    (((2, 3, 4), (2, 3, 4)), {"dropout_p": 0.1, "is_causal": True, "attn_mask": torch.ones(3, 3, dtype=torch.bool)},
     ValueError, "is_causal"),  # fmt: skip
    (((2, 3, 4), (2, 3, 4)), {"dropout_p": 0.1, "attn_mask": torch.ones(3, 3, dtype=torch.int64)},
     TypeError, "torch.int64"),  # fmt: skip
]


@pytest.mark.parametrize("shapes, kw, error, words", BAD)
def test_bad_arguments_are_refused_clearly(shapes, kw, error, words):
    q, k = torch.randn(shapes[0]), torch.randn(shapes[1])
    with pytest.raises(error) as info:
        SDPA(q, k, k.clone(), **kw)
    assert words in str(info.value)


def test_mixed_dtypes_are_refused():
    q = torch.randn(3, 4)
    with pytest.raises(TypeError, match="one floating dtype"):
        SDPA(q, q.double(), q, dropout_p=0.1)


def test_under_torch_compile_the_same_values_and_gradients_as_eager():
    q, k, v = _qkv((2, 3, 5, 8), (2, 3, 6, 8), dtype=torch.float32, seed=4)
    compiled = torch.compile(lambda q, k, v: SDPA(q, k, v, dropout_p=0.4, is_causal=True), fullgraph=True,
                             backend="aot_eager")
    results = []
    for fn in (compiled, lambda q, k, v: SDPA(q, k, v, dropout_p=0.4, is_causal=True)):
        torch.manual_seed(8)
        out = fn(q, k, v)
        grads = torch.autograd.grad(out.pow(2).sum(), (q, k, v))
        results.append((out.detach(), grads))
    (a, ga), (b, gb) = results
    assert torch.allclose(a, b, atol=1e-6)
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, atol=1e-5)


def test_torch_func_and_second_derivatives_are_refused_with_what_to_use():
    q, k, v = _qkv((2, 4, 8), (2, 4, 8), seed=5)
    with pytest.raises(NotImplementedError, match="does not support torch.func transforms"):
        torch.func.grad(lambda q: SDPA(q, k, v, dropout_p=0.5).sum())(q.detach())
    with pytest.raises(NotImplementedError, match="does not support torch.func transforms"):
        torch.func.vmap(lambda q: SDPA(q, k, v, dropout_p=0.5), randomness="different")(q.detach())
    out = SDPA(q, k, v, dropout_p=0.5)
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(out.sum(), q, create_graph=True)


def test_under_autocast_the_dtype_and_values_of_the_autocast_dtype():
    q, k, v = (t.detach().float() for t in _qkv((2, 3, 16, 8), (2, 3, 16, 8), seed=6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(1)
        out = SDPA(q, k, v, dropout_p=0.2)
        plain = SDPA(q, k, v)
    assert out.dtype == plain.dtype == torch.bfloat16
    torch.manual_seed(1)
    assert torch.equal(out, SDPA(q.bfloat16(), k.bfloat16(), v.bfloat16(), dropout_p=0.2))


def test_a_float_mask_of_another_dtype_is_taken_as_torch_takes_it():
    q, k, v = (t.detach() for t in _qkv((2, 4, 8), (2, 4, 8), seed=7))  # float64, and a float32 mask
    mask = torch.randn(4, 4, dtype=torch.float32)
    assert torch.allclose(SDPA(q, k, v, mask), TF.scaled_dot_product_attention(q, k, v, mask), atol=1e-6)
    low = q.bfloat16()
    assert torch.equal(SDPA(low, low, low, mask), TF.scaled_dot_product_attention(low, low, low, mask))
    g = torch.Generator().manual_seed(3)
    seed = draw_seed(torch.Generator().manual_seed(3))
    out = SDPA(q, k, v, mask, dropout_p=0.3, generator=g)
    assert torch.allclose(out, reference(q, k, v, seed, 0.3, mask=mask.double()), atol=1e-12)
    leaf = mask.clone().requires_grad_()
    SDPA(q, k, v, leaf, dropout_p=0.3).sum().backward()
    assert leaf.grad.dtype == torch.float32
    with pytest.raises(TypeError, match="a float32 one or one of the query's dtype"):
        SDPA(q.float(), k.float(), v.float(), mask.double())


def test_forward_mode_ad_is_refused_and_fake_traces_draw_per_call():
    import torch.autograd.forward_ad as fwAD
    from torch.fx.experimental.proxy_tensor import make_fx

    q, k, v = (t.detach() for t in _qkv((2, 4, 8), (2, 4, 8), seed=8))
    with fwAD.dual_level(), pytest.raises(NotImplementedError, match="no forward-mode AD"):
        SDPA(fwAD.make_dual(q, torch.ones_like(q)), k, v, dropout_p=0.5)
    gm = make_fx(lambda q, k, v: SDPA(q, k, v, dropout_p=0.5), tracing_mode="fake")(q, k, v)
    assert not torch.equal(gm(q, k, v), gm(q, k, v))
