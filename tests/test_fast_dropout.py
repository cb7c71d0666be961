"""droplab's fast dropout: the counter-based mask, its statistics, autograd, dtypes, compile.

Bounds are derived, not tuned: counts within 5 binomial standard deviations; independence by
a chi-square statistic on 2x2 tables of keep bits (1 degree of freedom) below 25, the square
of 5 standard normal deviations (P(chi2_1 > 25) = 5.7e-7 under independence).
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from droplab.functional import dropout, dropout_reference, seeded_dropout
from droplab.kernels import counter
from droplab.memory import saved_bytes

CHI2_BOUND = 25.0
P_VALUES = [0.001, 0.1, 0.5, 0.9, 0.999]
SHAPES = [(1000, 1000), (7, 13, 101), (256, 256), (3, 1, 4, 1, 5, 9, 2, 6)]


def keep_bits(seed: int, shape, p: float) -> np.ndarray:
    return (seeded_dropout(torch.ones(shape), p, seed) != 0).numpy()


def chi2_2x2(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's chi-square of the 2x2 table of two boolean samples of equal length."""
    a, b = a.ravel().astype(bool), b.ravel().astype(bool)
    n = a.size
    n11 = int(np.sum(a & b))
    n10 = int(np.sum(a & ~b))
    n01 = int(np.sum(~a & b))
    n00 = n - n11 - n10 - n01
    denom = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    return n * (n11 * n00 - n10 * n01) ** 2 / denom


# --- the mask is the specified function of (seed, index, p) -----------------------------


@pytest.mark.parametrize("n", [1, 2, 511, 512, 513, 1023, 1024, 1025, 3000, 40_000, 300_001])
@pytest.mark.parametrize("seed", [0, 1, -1, 2**62 + 12345, -(2**63)])
def test_kernel_matches_the_numpy_specification(n, seed):
    for p in (0.1, 0.5, 0.77):
        assert np.array_equal(keep_bits(seed, (n,), p), counter.keep_mask(seed, n, p)), (n, seed, p)


def test_mask_depends_on_index_not_shape_or_threads():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = keep_bits(42, (600, 1000), 0.3)
        torch.set_num_threads(2)
        two = keep_bits(42, (600, 1000), 0.3)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(one, two)
    assert np.array_equal(one.ravel(), keep_bits(42, (1000, 3, 200), 0.3).ravel())


def test_seed_comes_from_torch_generator():
    x = torch.randn(300, 300)
    torch.manual_seed(5)
    a = dropout(x, 0.5)
    b = dropout(x, 0.5)
    torch.manual_seed(5)
    assert torch.equal(a, dropout(x, 0.5)) and not torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(dropout(x, 0.5, generator=g1), dropout(x, 0.5, generator=g2))
    # one draw per call: the generator state after a call is the state after one randint
    g3 = torch.Generator().manual_seed(9)
    torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64, generator=g3)
    assert torch.equal(g1.get_state(), g3.get_state())


# --- statistics ----------------------------------------------------------------------------


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("shape", SHAPES)
def test_kept_fraction_within_5_sigma(p, shape):
    for seed in (0, 1, 2):
        kept = int(keep_bits(seed, shape, p).sum())
        n = math.prod(shape)
        assert abs(kept - n * (1 - p)) <= 5 * math.sqrt(n * p * (1 - p)), (seed, kept, n * (1 - p))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_no_dependence_between_neighbours_rows_calls_and_seeds(p):
    m = keep_bits(7, (1000, 1000), p)
    flat = m.ravel()
    half = counter.HALF
    words = flat[: flat.size // (2 * half) * 2 * half].reshape(-1, 2 * half)  # halves share a word
    x = torch.ones(1000, 1000)
    torch.manual_seed(3)
    call1, call2 = (dropout(x, p) != 0).numpy(), (dropout(x, p) != 0).numpy()
    pairs = {
        "neighbours": (flat[:-1], flat[1:]),
        "rows": (m[:-1], m[1:]),
        "low/high half of one word": (words[:, :half], words[:, half:]),
        "across blocks": (words[:-1, -1], words[1:, 0]),
        "consecutive calls": (call1, call2),
        "consecutive seeds": (m, keep_bits(8, (1000, 1000), p)),
        "seeds 0 and 1": (keep_bits(0, (1000, 1000), p), keep_bits(1, (1000, 1000), p)),
    }
    for name, (a, b) in pairs.items():
        assert chi2_2x2(a, b) < CHI2_BOUND, name


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_expectation_preserved(p):
    g = torch.Generator().manual_seed(7)
    h = torch.rand(500, 1000, generator=g) + 0.5
    out = dropout(h, p, generator=g)
    sd = math.sqrt(float((h.double() ** 2).sum()) * p / (1 - p))
    assert abs(float(out.double().sum() - h.double().sum())) <= 5 * sd


# --- same semantics as the reference, given the same mask -----------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.77])
def test_forward_and_backward_equal_the_lecture_formula_with_the_same_mask(dtype, p):
    x = (torch.randn(123, 77) * 3).to(dtype).requires_grad_()
    seed = 1234
    y = seeded_dropout(x, p, seed)
    mask = torch.from_numpy(counter.keep_mask(seed, x.numel(), p)).reshape(x.shape).to(dtype)
    assert y.dtype == dtype and y.shape == x.shape
    assert torch.equal(y, mask * x.detach() / (1.0 - p))  # bit for bit, as dropout_reference computes
    g = torch.randn(123, 77).to(dtype)
    y.backward(g)
    assert torch.equal(x.grad, (g / (1.0 - p)) * mask)  # what autograd gives the reference


def test_nan_and_inf_propagate_like_the_reference():
    x = torch.tensor([float("nan"), float("inf"), -1.0, 2.0] * 256)
    y = seeded_dropout(x, 0.5, 3)
    mask = torch.from_numpy(counter.keep_mask(3, x.numel(), 0.5)).float()
    torch.testing.assert_close(y, mask * x / 0.5, equal_nan=True, rtol=0, atol=0)


def test_non_contiguous_input_same_as_contiguous():
    x = torch.randn(300, 200).t()
    assert not x.is_contiguous()
    assert torch.equal(seeded_dropout(x, 0.4, 11), seeded_dropout(x.contiguous(), 0.4, 11))


def test_gradcheck_and_gradgradcheck_float64():
    x = torch.randn(8, 9, dtype=torch.float64, requires_grad=True)

    def f(t):
        return dropout(t, 0.35, generator=torch.Generator().manual_seed(5))

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_autograd_saves_no_mask():
    """0 bytes per element saved by droplab's dropout; torch's CPU dropout saves a mask."""
    x = torch.randn(512, 512, requires_grad=True)
    assert saved_bytes(lambda t: dropout(t, 0.5), x) == 0
    assert saved_bytes(lambda t: torch.nn.functional.dropout(t, 0.5), x) >= 512 * 512
    assert saved_bytes(lambda t: t * t, x) == 2 * 4 * 512 * 512  # the hook counts what mul saves


def test_inplace_on_non_leaf_backprops():
    leaf = torch.rand(40, 40, requires_grad=True)
    h = leaf * 1.0
    out = dropout(h, 0.5, inplace=True, generator=torch.Generator().manual_seed(2))
    assert out is h
    out.sum().backward()
    assert torch.equal(leaf.grad, (out != 0).float() * 2.0)


# --- the rest of PyTorch ---------------------------------------------------------------------


def test_inside_torch_compile_without_graph_break():
    def f(t):
        return dropout(t, 0.5) * 3

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    x = torch.randn(64, 64, requires_grad=True)
    torch.manual_seed(4)
    eager = f(x)
    torch.manual_seed(4)
    out = compiled(x)
    assert torch.equal(out, eager)  # the same seed draw, the same kernel
    out.sum().backward()
    assert torch.equal(x.grad, (eager != 0).float() * 6.0)


def test_torch_func_is_refused_with_a_clear_error():
    with pytest.raises(NotImplementedError, match="does not support torch.func transforms"):
        torch.func.grad(lambda t: dropout(t, 0.5).sum())(torch.randn(4))
    # the reference works under torch.func.grad
    g = torch.func.grad(lambda t: dropout_reference(t, 0.5).sum())(torch.randn(4))
    assert set(g.tolist()) <= {0.0, 2.0}


# --- CUDA: the same mask on the GPU (skipped on machines without one) ------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (and Triton)")


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 1023, 1025, 1_000_003])
def test_cuda_mask_and_values_identical_to_cpu(dtype, n):
    x = torch.randn(n).to(dtype)
    for seed, p in ((0, 0.5), (-77, 0.1), (2**62, 0.9)):
        cpu = seeded_dropout(x, p, seed)
        gpu = seeded_dropout(x.cuda(), p, seed)
        assert torch.equal(gpu.cpu(), cpu)


@cuda
def test_cuda_backward_regenerates_the_mask():
    x = torch.randn(1000, 1000, device="cuda", requires_grad=True)
    y = seeded_dropout(x, 0.3, 99)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, (y != 0).float() / 0.7)


# Triton's interpreter runs the CUDA kernel on CPU tensors: its arithmetic (hash, layout,
# threshold, division, rounding) is checked here on every machine with Triton installed.
_INTERPRET = """
import json, sys, torch
from droplab.functional import seeded_dropout
from droplab.kernels import cuda
rows = []
for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
    for n in (1, 1023, 1025, 100_003):
        x = torch.randn(n, generator=torch.Generator().manual_seed(n)).to(dtype)
        for seed, p in ((0, 0.5), (-77, 0.1), (2**62, 0.9), (2**63 - 1, 0.999)):
            cpu, tri = seeded_dropout(x, p, seed), cuda.seeded_dropout(x, p, seed)
            ulps = ((tri.float() - cpu.float()).abs() / cpu.float().abs().clamp_min(1e-30)).max().item()
            rows.append([str(dtype), n, seed, p, torch.equal(tri, cpu), torch.equal(tri == 0, cpu == 0), ulps])
json.dump(rows, sys.stdout)
"""


def test_triton_kernel_in_the_interpreter_matches_the_cpu_kernel():
    pytest.importorskip("triton", reason="needs Triton (pip install triton) to interpret the CUDA kernel")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, "-c", _INTERPRET], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout)
    assert len(rows) == 4 * 4 * 4
    for dtype, n, seed, p, identical, same_mask, rel in rows:
        assert same_mask, (dtype, n, seed, p)
        if dtype == "torch.bfloat16":
            # The interpreter rounds float32 -> bfloat16 toward zero; compiled Triton rounds to
            # nearest even, as the CPU does (checked bit for bit by the GPU test above). So
            # here: the same mask, values within one bfloat16 step (relative 2**-7).
            assert rel <= 2.0**-7, (n, seed, p, rel)
        else:
            assert identical, (dtype, n, seed, p)


def test_large_output_on_huge_pages_is_still_the_specified_mask():
    n = 2048 * 1024 + 5  # over 8 MiB of float32: the huge-page allocation path
    assert np.array_equal(keep_bits(21, (n,), 0.25), counter.keep_mask(21, n, 0.25))


@pytest.mark.parametrize("shape", [(0,), (3, 0, 2), ()])
def test_empty_and_zero_dim_tensors(shape):
    x = torch.full(shape, 3.0)
    out = dropout(x, 0.5)
    assert out.shape == x.shape and set(out.flatten().tolist()) <= {0.0, 6.0}
