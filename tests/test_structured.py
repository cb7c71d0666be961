"""Structured dropout (``broadcast_dims``), channel dropout, DropPath and the published mask.

Statistical checks use fixed seeds and 5-sigma binomial bounds: the kept fraction, the mask
constant along the broadcast dimensions, independence across the others (pairs of channels kept
together at rate (1 - p)^2), and E[h'] = h.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from droplab import functional as F
from droplab import nn as dnn
from droplab.kernels import counter

SPEC = Path(__file__).resolve().parent.parent / "docs" / "mask-spec.md"

# docs/mask-spec.md's known-answer vectors
DRAWS = {
    0: "7b1dcdaf a1b965f4 8009454f 724c81ec 51a8749b 747ea2ea 1f4532e1 c916ab3c",
    7: "59320dd7 f43c661c bab12a02 673e29cb 6a1e21da cbbeaa11 33c2d0f6 3d02befe",
    -1: "1b652c20 dbf682c9 b27281e9 cba982d2 578069ae a438bb33 02083fa5 a39e8064",
}
EDGE = ([510, 511, 512, 513, 1022, 1023, 1024, 1025], "98ab61b7 3182041b 63cbe1e4 044c3cd7 41db489f 83fd1b83 "
        "f9c6c9bd 731f1793")  # fmt: skip
KEEP = {0.1: (429496730, "1111111111011101"), 0.5: (2147483648, "0110010011000100"),
        0.9: (3865470566, "0100000000000000")}  # fmt: skip


def bits(mask) -> str:
    return "".join("1" if b else "0" for b in np.asarray(mask).tolist())


# --- the published specification ------------------------------------------------------------------


def test_the_known_answer_vectors_are_the_specs_and_the_docs():
    doc = SPEC.read_text()
    for seed, words in DRAWS.items():
        assert " ".join(f"{int(u):08x}" for u in counter.draws(seed & counter.MASK64, 8)) == words
        assert words in doc
    index, words = EDGE
    assert " ".join(f"{int(u):08x}" for u in counter.draws(7, 1026)[index]) == words and words in doc
    for p, (t, keep) in KEEP.items():
        assert counter.threshold(p) == t and bits(counter.keep_mask(7, 16, p)) == keep
        assert re.search(rf"\| {p} \| {t} \| {keep} \|", doc)


@pytest.mark.parametrize("p", list(KEEP))
def test_the_cpu_kernel_and_keep_mask_give_the_known_answers(p):
    keep = KEEP[p][1]
    assert bits(F.keep_mask(7, (16,), p)) == keep
    assert bits(F.seeded_dropout(torch.ones(16), p, 7) != 0) == keep


@pytest.mark.parametrize("seed", [0, 7, -1, 2**62 + 12345])
@pytest.mark.parametrize("shape", [(3000,), (7, 300), (2, 3, 5, 70)])
def test_keep_mask_is_the_spec_in_row_major_order(seed, shape):
    n = math.prod(shape)
    spec = counter.keep_mask(seed & counter.MASK64, n, 0.3).reshape(shape)
    assert np.array_equal(F.keep_mask(seed, shape, 0.3).numpy(), spec)


def test_keep_mask_is_the_mask_a_call_of_dropout_used():
    x = torch.randn(4, 6, 50)
    for dims in [(), (1,), (0, 2), (-1,)]:
        y = F.dropout(x, 0.4, generator=torch.Generator().manual_seed(11), broadcast_dims=dims)
        mask = F.keep_mask(F.draw_seed(torch.Generator().manual_seed(11)), x.shape, 0.4, broadcast_dims=dims)
        assert torch.equal(y, torch.where(mask, x / (1 - 0.4), x * 0.0)), dims


def test_the_cuda_kernel_gives_the_known_answers():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (and Triton)")
    for p, (_, keep) in KEEP.items():
        assert bits((F.seeded_dropout(torch.ones(16, device="cuda"), p, 7) != 0).cpu()) == keep
    x = torch.randn(3, 8, 40)
    for dims in [(1,), (2,), (0, 2)]:
        cpu = F.dropout(x, 0.3, generator=torch.Generator().manual_seed(5), broadcast_dims=dims)
        gpu = F.dropout(x.cuda(), 0.3, generator=torch.Generator().manual_seed(5), broadcast_dims=dims)
        assert torch.equal(cpu, gpu.cpu())


# --- structured dropout: semantics -------------------------------------------------------------


def test_with_no_broadcast_dimension_it_is_the_kernel_bit_for_bit_nan_and_inf_included():
    x = torch.randn(64, 257)
    x[0, :5] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0])
    for p in (0.1, 0.5, 0.9):
        a = F.structured_dropout(x, p, (), generator=torch.Generator().manual_seed(3))
        b = F.dropout(x, p, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_the_mask_is_constant_along_the_broadcast_dims(dtype):
    x = torch.ones(8, 16, 5, 6, dtype=dtype)
    y = F.dropout(x, 0.5, broadcast_dims=(2, 3), generator=torch.Generator().manual_seed(1))
    assert y.dtype == dtype and y.shape == x.shape
    per_channel = y.flatten(2)
    assert torch.equal(per_channel, per_channel[:, :, :1].expand_as(per_channel))
    assert set(torch.unique(y.float()).tolist()) == {0.0, 2.0}


def test_gradients_are_the_mask_and_scale_and_nothing_the_inputs_size_is_saved():
    x = torch.randn(32, 64, 10, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        y = F.dropout(x, 0.25, broadcast_dims=(2,), generator=torch.Generator().manual_seed(2))
    assert saved == []  # the seed and p are kept as numbers; the mask is drawn again in backward
    y.backward(torch.ones_like(y))
    mask = F.keep_mask(F.draw_seed(torch.Generator().manual_seed(2)), x.shape, 0.25, (2,))
    assert torch.equal(x.grad, mask.float() / 0.75)


def test_gradcheck_and_gradgradcheck():
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)

    def f(t):
        return F.structured_dropout(t, 0.4, (1,), generator=torch.Generator().manual_seed(9))

    assert torch.autograd.gradcheck(f, (x,)) and torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("dims, message", [
    ((3,), "broadcast_dims holds 3: expected dimensions of a 3-D input, from -3 to 2"),
    (("1",), "broadcast_dims holds '1'"), ((True,), "broadcast_dims holds True"),
])  # fmt: skip
def test_a_broadcast_dim_the_input_lacks_is_refused(dims, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        F.dropout(torch.ones(2, 3, 4), 0.5, broadcast_dims=dims)


def test_eval_p0_p1_and_inplace():
    x = torch.randn(4, 5, 6)
    assert F.dropout(x, 0.5, training=False, broadcast_dims=(1,)) is x
    assert F.dropout(x, 0.0, broadcast_dims=(1,)) is x
    nan = torch.tensor([[float("nan"), 1.0]])
    assert torch.equal(F.dropout(nan, 1.0, broadcast_dims=(1,)).isnan(), torch.tensor([[True, False]]))
    y = x.clone()
    out = F.dropout(y, 0.5, inplace=True, broadcast_dims=(2,), generator=torch.Generator().manual_seed(4))
    assert out is y and torch.equal(y, F.dropout(x, 0.5, broadcast_dims=(2,),
                                                 generator=torch.Generator().manual_seed(4)))  # fmt: skip


# --- statistics (fixed seeds, 5-sigma binomial bounds) -------------------------------------------


def _within(count: int, n: int, rate: float) -> bool:
    return abs(count - n * rate) <= 5 * math.sqrt(n * rate * (1 - rate))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_kept_fraction_independence_and_expectation(p):
    n, c = 2000, 100
    y = F.dropout(torch.ones(n, c, 7), p, broadcast_dims=(2,), generator=torch.Generator().manual_seed(21))
    keep = y[:, :, 0] != 0
    assert _within(int(keep.sum()), n * c, 1 - p)  # kept fraction
    both = keep[:, :-1] & keep[:, 1:]  # neighbouring channels: kept together at (1 - p)^2 if independent
    assert _within(int(both.sum()), n * (c - 1), (1 - p) ** 2)
    rows = keep[:-1] & keep[1:]  # neighbouring samples, the same channel
    assert _within(int(rows.sum()), (n - 1) * c, (1 - p) ** 2)
    # E[h'] = h: the mean of n*c values in {0, 1/(1-p)} (each channel counted once), 5 sigma
    values = y[:, :, 0].double()
    sigma = math.sqrt(p / (1 - p) / (n * c))
    assert abs(values.mean().item() - 1.0) <= 5 * sigma


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_drop_path_drops_whole_samples_at_rate_p(p):
    n = 40_000
    y = F.drop_path(torch.ones(n, 3, 4), p, training=True, generator=torch.Generator().manual_seed(8))
    flat = y.flatten(1)
    assert torch.equal(flat, flat[:, :1].expand_as(flat))  # one draw per sample
    kept = int((flat[:, 0] != 0).sum())
    assert _within(kept, n, 1 - p)
    assert abs(y[:, 0, 0].double().mean().item() - 1.0) <= 5 * math.sqrt(p / (1 - p) / n)


# --- DropPath and channel dropout: the semantics of timm and torch -------------------------------


def test_drop_path_is_timms_formula_with_droplabs_mask():
    x = torch.randn(16, 5, 3)
    seed = F.draw_seed(torch.Generator().manual_seed(6))
    keep = F.keep_mask(seed, (16, 1, 1), 0.25).float()
    y = F.drop_path(x, 0.25, training=True, generator=torch.Generator().manual_seed(6))
    assert torch.equal(y, x * keep / 0.75)
    y = F.drop_path(x, 0.25, training=True, generator=torch.Generator().manual_seed(6), scale_by_keep=False)
    assert torch.equal(y, x * keep)
    assert F.drop_path(x, 0.25) is x  # timm's default: training=False
    layer = dnn.DropPath(0.25)
    assert layer.eval()(x) is x and repr(layer) == "DropPath(p=0.25, scale_by_keep=True)"
    with pytest.raises(ValueError, match="at least 1-D"):
        F.drop_path(torch.tensor(1.0), 0.5, training=True)


@pytest.mark.parametrize("layer, shape, shared", [
    (dnn.Dropout1d, (4, 6, 9), (2,)), (dnn.Dropout1d, (6, 9), (1,)),
    (dnn.Dropout2d, (4, 6, 5, 5), (2, 3)), (dnn.Dropout3d, (2, 6, 3, 4, 5), (2, 3, 4)),
    (dnn.Dropout3d, (6, 3, 4, 5), (1, 2, 3)),
])  # fmt: skip
def test_channel_dropout_shares_the_mask_where_torch_does(layer, shape, shared):
    torch.manual_seed(0)
    y = layer(0.5)(torch.ones(shape))
    ref = torch.nn.__dict__[layer.__name__](0.5)(torch.ones(shape))
    for out in (y, ref):  # the same structure as torch's: constant along the shared dimensions
        assert torch.equal(out, out.amax(dim=shared, keepdim=True).expand_as(out))
    assert set(torch.unique(y).tolist()) <= {0.0, 2.0}


def test_channel_dropout_refuses_and_warns_as_torch_does():
    with pytest.raises(RuntimeError, match="dropout1d: Expected 2D or 3D input, but received a 4D input"):
        dnn.Dropout1d(0.5)(torch.ones(2, 3, 4, 5))
    with pytest.warns(UserWarning, match="Received a 3D input to dropout2d"):
        y = dnn.Dropout2d(0.5)(torch.ones(4, 6, 9))
    assert torch.equal(y, y[:, :, :1].expand_as(y))  # read as (N, C, L), as torch does
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        dnn.Dropout3d(1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dnn.Dropout2d(0.5)(torch.ones(2, 3, 4, 4))  # the 4-D input it is for: no warning
    m = dnn.Dropout2d(0.5)
    assert m.eval()(x := torch.ones(2, 3, 4, 4)) is x and repr(m) == "Dropout2d(p=0.5, inplace=False)"


def test_the_dropout_layer_takes_broadcast_dims():
    m = dnn.Dropout(0.5, broadcast_dims=(1,))
    assert repr(m) == "Dropout(p=0.5, inplace=False, broadcast_dims=(1,))"
    torch.manual_seed(3)
    y = m(torch.ones(50, 20))
    assert torch.equal(y, y[:, :1].expand_as(y))
    with pytest.raises(ValueError, match="broadcast_dims \\(1,\\) needs impl 'fast'"):
        dnn.Dropout(0.5, impl="reference", broadcast_dims=(1,))


def test_negative_broadcast_dims_count_from_the_end():
    x = torch.randn(3, 4, 5)
    a = F.dropout(x, 0.5, broadcast_dims=(-1, -2), generator=torch.Generator().manual_seed(1))
    b = F.dropout(x, 0.5, broadcast_dims=(2, 1), generator=torch.Generator().manual_seed(1))
    kept = a != 0
    assert torch.equal(a, b) and torch.equal(kept, kept[:, :1, :1].expand_as(kept))
