"""droplab.functional.dropout_add and bias_dropout_add: the composed expression's numbers, in one pass.

Every fused result is compared bit for bit with ``residual + droplab.functional.dropout(x + bias)``
for the same seed (whose mask the mask tests check against the specification), on both CPU
kernels, in the Triton interpreter, and on CUDA where a GPU is at hand.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from droplab.functional import _kernel, bias_dropout_add, dropout, dropout_add
from droplab.kernels import native, numba_cpu
from droplab.memory import saved_bytes

SHAPES = [(1,), (3, 5), (7, 1000), (2, 1024), (33, 1031), (256, 256)]  # partial and whole blocks, > PARALLEL_MIN


def _backends():
    found = [("numba", numba_cpu)]
    if native.unavailable_reason() is None:
        found.append(("native", native))
    return found


@pytest.mark.parametrize("name, impl", _backends())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_each_cpu_kernel_computes_the_composed_expression_bit_for_bit(name, impl, dtype, shape):
    g = torch.Generator().manual_seed(len(shape) * 1000 + shape[-1])
    x, r = torch.randn(shape, generator=g, dtype=dtype), torch.randn(shape, generator=g, dtype=dtype)
    bias = torch.randn(shape[-1], generator=g, dtype=dtype)
    x[0] = math.nan  # NaN stays NaN where dropped (x * 0), as composed
    for b in (None, bias):
        for seed, p in ((0, 0.5), (-77, 0.1), (2**62, 0.9)):
            want = r + _kernel(x if b is None else x + b, p, seed)
            for chunks in (1, 2, 3):
                out = torch.empty_like(x)
                impl.dropout_add(x.data_ptr(), None if b is None else b.data_ptr(), shape[-1] if b is not None else 1,
                                 r.data_ptr(), out.data_ptr(), x.numel(), seed & (2**64 - 1), p, dtype, chunks)
                assert torch.allclose(out, want, rtol=0, atol=0, equal_nan=True), (name, b is None, seed, p, chunks)


@pytest.mark.parametrize("name, impl", _backends())
def test_each_kernel_may_write_into_x_or_the_residual(name, impl):
    x, r, b = torch.randn(9, 7000), torch.randn(9, 7000), torch.randn(7000)
    for bias in (None, b):
        want = r + _kernel(x if bias is None else x + bias, 0.3, 5)
        for into in ("x", "r"):
            xx, rr = x.clone(), r.clone()
            out = xx if into == "x" else rr
            impl.dropout_add(xx.data_ptr(), None if bias is None else bias.data_ptr(), 7000, rr.data_ptr(),
                             out.data_ptr(), x.numel(), 5, 0.3, torch.float32, 2)
            assert torch.equal(out, want), (into, bias is None)


def _same_seed(fn, seed=0):
    torch.manual_seed(seed)
    return fn()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_dropout_add_equals_residual_plus_dropout_for_the_same_generator_state(dtype):
    x, r = torch.randn(37, 300).to(dtype), torch.randn(37, 300).to(dtype)
    b = torch.randn(300).to(dtype)
    assert torch.equal(_same_seed(lambda: dropout_add(x, r, 0.3)), _same_seed(lambda: r + dropout(x, 0.3)))
    assert torch.equal(_same_seed(lambda: bias_dropout_add(x, b, r, 0.3)),
                       _same_seed(lambda: r + dropout(x + b, 0.3)))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(dropout_add(x, r, 0.3, generator=g1), r + dropout(x, 0.3, generator=g2))


def test_the_fused_pass_draws_a_new_mask_each_call_and_the_mask_is_dropouts():
    x, r = torch.ones(64, 512), torch.zeros(64, 512)
    torch.manual_seed(1)
    a, b = dropout_add(x, r, 0.25), dropout_add(x, r, 0.25)
    assert not torch.equal(a, b)
    assert torch.equal(torch.unique(a), torch.tensor([0.0, 1.0]) / 0.75)


@pytest.mark.parametrize("case", ["broadcast residual", "broadcast bias", "transposed x", "other dtype", "0-dim"])
def test_inputs_the_kernel_does_not_take_get_the_composed_expression(case):
    x, r, b = torch.randn(8, 6), torch.randn(8, 6), torch.randn(6)
    if case == "broadcast residual":
        r = torch.randn(6)
    elif case == "broadcast bias":
        b = torch.randn(8, 1)
    elif case == "transposed x":
        x = torch.randn(6, 8).t()
    elif case == "other dtype":
        r = r.double()
    else:
        x, r, b = torch.tensor(2.0), torch.tensor(1.0), torch.tensor(0.5)
    want = _same_seed(lambda: r + dropout(x + b, 0.5))
    got = _same_seed(lambda: bias_dropout_add(x, b, r, 0.5))
    assert torch.equal(got, want) and got.dtype == want.dtype and got.stride() == want.stride()


def test_eval_p0_and_p1_are_torchs_composed_values():
    x, r, b = torch.tensor([1.0, math.inf, math.nan]), torch.ones(3), torch.zeros(3)
    assert torch.equal(dropout_add(x[:1], r[:1], 0.5, training=False), r[:1] + x[:1])
    assert torch.equal(dropout_add(x[:1], r[:1], 0.0), r[:1] + x[:1])
    assert torch.equal(bias_dropout_add(x[:1], b[:1], r[:1], 0.5, training=False), r[:1] + (x[:1] + b[:1]))
    out = dropout_add(x, r, 1.0)  # residual + x * 0: inf and NaN give NaN
    assert out[0] == 1.0 and out[1:].isnan().all()


def _composed_grads(x, b, r, p, seed):
    leaves = [t.detach().requires_grad_() for t in (x, b, r)]
    torch.manual_seed(seed)
    out = leaves[2] + dropout(leaves[0] + leaves[1], p)
    out.backward(torch.arange(out.numel(), dtype=out.dtype).reshape(out.shape))
    return out.detach(), [t.grad for t in leaves]


def test_gradients_equal_the_composed_expressions_with_the_same_mask():
    x, b, r = torch.randn(5, 2049), torch.randn(2049), torch.randn(5, 2049)
    want, grads = _composed_grads(x, b, r, 0.4, 3)
    leaves = [t.detach().requires_grad_() for t in (x, b, r)]
    torch.manual_seed(3)
    out = bias_dropout_add(*leaves, 0.4)
    out.backward(torch.arange(out.numel(), dtype=out.dtype).reshape(out.shape))
    assert torch.equal(out.detach(), want)
    for got, expected in zip([t.grad for t in leaves], grads):
        assert torch.allclose(got, expected, rtol=1e-6, atol=1e-3)  # bias: a sum in another order
    assert torch.equal(leaves[0].grad, grads[0]) and torch.equal(leaves[2].grad, grads[2])


def test_gradcheck_and_gradgradcheck():
    x, b, r = (torch.randn(s, dtype=torch.float64, requires_grad=True) for s in ((3, 7), (7,), (3, 7)))

    def fn(x, b, r):
        torch.manual_seed(11)  # the same mask for every evaluation
        return bias_dropout_add(x, b, r, 0.3)

    assert torch.autograd.gradcheck(fn, (x, b, r))
    assert torch.autograd.gradgradcheck(fn, (x, b, r))


def test_nothing_is_saved_for_backward():
    x = torch.randn(1024, 1024, requires_grad=True)
    r, b = torch.randn(1024, 1024, requires_grad=True), torch.randn(1024, requires_grad=True)
    assert saved_bytes(lambda t: dropout_add(t, r, 0.5), x) == 0
    assert saved_bytes(lambda t: bias_dropout_add(t, b, r, 0.5), x) == 0
    assert saved_bytes(lambda t: r + F.dropout(t, 0.5), x) >= x.numel()  # torch keeps a mask


def test_forward_mode_ad_goes_through_the_same_mask():
    import torch.autograd.forward_ad as fwAD

    x, r, t = torch.randn(4, 300), torch.randn(4, 300), torch.randn(4, 300)
    with fwAD.dual_level():
        torch.manual_seed(2)
        out = dropout_add(fwAD.make_dual(x, t), r, 0.5)
        tangent = fwAD.unpack_dual(out).tangent
    assert torch.equal(tangent, _same_seed(lambda: dropout(t, 0.5), 2))


@pytest.mark.parametrize("bad, error, match", [
    (dict(p=1.5), ValueError, "between 0 and 1, but got 1.5"),
    (dict(p=math.nan), ValueError, "between 0 and 1, but got nan"),
    (dict(residual=[1.0, 2.0]), TypeError, "residual must be a torch.Tensor, got list"),
    (dict(residual=torch.ones(5)), ValueError, r"x \(2, 3\), residual \(5,\) do not broadcast"),
    (dict(x=torch.ones(2, 3, dtype=torch.int64), residual=torch.ones(2, 3, dtype=torch.int64)), TypeError,
     "floating-point"),
])
def test_bad_input_is_refused_by_name(bad, error, match):
    args = dict(x=torch.ones(2, 3), residual=torch.ones(2, 3), p=0.5) | bad
    with pytest.raises(error, match=match):
        dropout_add(**args)


def test_a_bias_that_does_not_broadcast_is_refused():
    with pytest.raises(ValueError, match=r"x \(2, 3\), residual \(2, 3\), bias \(4,\) do not broadcast"):
        bias_dropout_add(torch.ones(2, 3), torch.ones(4), torch.ones(2, 3), 0.5)


def test_under_torch_compile_the_values_and_gradients_of_eager_for_a_seed():
    x, b, r = (torch.randn(s, requires_grad=True) for s in ((16, 64), (64,), (16, 64)))
    results = []
    for fn in (torch.compile(bias_dropout_add, fullgraph=True, backend="aot_eager"), bias_dropout_add):
        torch.manual_seed(6)
        out = fn(x, b, r, 0.3)
        results.append((out.detach(), torch.autograd.grad(out.pow(2).sum(), (x, b, r))))
    (a, ga), (e, ge) = results
    assert torch.equal(a, e)
    assert all(torch.allclose(u, v, rtol=1e-6, atol=1e-6) for u, v in zip(ga, ge))


def test_the_result_does_not_depend_on_the_thread_count():
    x, b, r = torch.randn(300, 1031), torch.randn(1031), torch.randn(300, 1031)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(_same_seed(lambda: bias_dropout_add(x, b, r, 0.3)))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(*outs)


def test_a_1d_x_with_a_bias_and_an_empty_last_dimension():
    x, b, r = (torch.randn(5, requires_grad=True) for _ in range(3))
    want, grads = _composed_grads(x, b, r, 0.3, 2)
    leaves = [t.detach().requires_grad_() for t in (x, b, r)]
    torch.manual_seed(2)
    out = bias_dropout_add(*leaves, 0.3)
    out.backward(torch.arange(5, dtype=out.dtype))
    assert torch.equal(out.detach(), want)
    assert all(torch.equal(t.grad, g) for t, g in zip(leaves, grads))
    empty = bias_dropout_add(torch.ones(3, 0), torch.ones(0), torch.ones(3, 0), 0.5)
    assert empty.shape == (3, 0)


def test_a_lazily_negated_view_keeps_its_sign():
    x = torch.complex(torch.ones(4096), torch.full((4096,), 3.0)).conj().imag  # -3, with the neg bit set
    assert x.is_neg()
    got = _same_seed(lambda: dropout_add(x, torch.zeros(4096), 0.5))
    want = _same_seed(lambda: dropout(x.resolve_neg(), 0.5))
    assert torch.equal(got, want) and set(got.unique().tolist()) == {-6.0, 0.0}


def test_a_graph_traced_from_fake_tensors_draws_a_new_mask_per_call():
    from torch.fx.experimental.proxy_tensor import make_fx

    x = torch.rand(64, 64) + 0.5
    for fn in (lambda t: dropout_add(t, t, 0.5), lambda t: dropout(t, 0.5)):
        gm = make_fx(fn, tracing_mode="fake")(x)
        assert not torch.equal(gm(x), gm(x))


_INTERPRET = """
import json, sys, torch
from droplab.functional import _kernel
from droplab.kernels import cuda
rows = []
for dtype in (torch.float32, torch.float64):
    for shape in ((1,), (3, 341), (5, 1031)):
        g = torch.Generator().manual_seed(shape[-1])
        x, r = torch.randn(shape, generator=g, dtype=dtype), torch.randn(shape, generator=g, dtype=dtype)
        b = torch.randn(shape[-1], generator=g, dtype=dtype)
        for bias in (None, b):
            for seed, p in ((0, 0.5), (-77, 0.1), (2**62, 0.9)):
                want = r + _kernel(x if bias is None else x + bias, p, seed)
                got = cuda.seeded_dropout_add(x, bias, r, p, seed)
                rows.append([str(dtype), list(shape), bias is None, seed, p, torch.equal(got, want)])
json.dump(rows, sys.stdout)
"""


def test_triton_kernel_in_the_interpreter_computes_the_composed_expression():
    pytest.importorskip("triton", reason="needs Triton (pip install triton) to interpret the CUDA kernel")
    run = subprocess.run([sys.executable, "-c", _INTERPRET], env={**os.environ, "TRITON_INTERPRET": "1"},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout)
    assert len(rows) == 2 * 3 * 2 * 3
    assert all(row[-1] for row in rows), [row for row in rows if not row[-1]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (and Triton)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_cuda_gives_the_cpu_numbers(dtype):
    x, r, b = torch.randn(33, 1031).to(dtype), torch.randn(33, 1031).to(dtype), torch.randn(1031).to(dtype)
    for fn in (lambda *t: dropout_add(t[0], t[2], 0.3), lambda *t: bias_dropout_add(*t, 0.3)):
        cpu = _same_seed(lambda: fn(x, b, r), 4)
        gpu = _same_seed(lambda: fn(x.cuda(), b.cuda(), r.cuda()), 4)
        assert torch.equal(gpu.cpu(), cpu)
