import math

import pytest
import torch

from droplab.functional import dropout, dropout_reference

FUNCS = [dropout_reference, dropout]


def five_sigma(n: int, p: float) -> float:
    """5 binomial standard deviations of the number of kept elements among n."""
    return 5 * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("p", [0.01, 0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("shape", [(1000, 1000), (7, 13, 101), (256, 256), (3, 1, 4, 1, 5, 9, 2, 6)])
def test_kept_fraction_within_5_sigma(func, p, shape):
    g = torch.Generator().manual_seed(1234)
    out = func(torch.ones(shape), p, generator=g)
    n = out.numel()
    kept = int((out != 0).sum())
    assert abs(kept - n * (1 - p)) <= five_sigma(n, p), (kept, n * (1 - p))


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_survivors_scaled_and_expectation_preserved(func, p):
    g = torch.Generator().manual_seed(7)
    h = torch.rand(500, 1000, generator=g) + 0.5  # nonzero, so a zero in h' means dropped
    out = func(h, p, generator=g)
    kept = out != 0
    torch.testing.assert_close(out[kept], h[kept] / (1 - p), rtol=0, atol=0)
    # E[h'] = h: sum(h') - sum(h) has variance sum(h^2) p / (1 - p); allow 5 sigma.
    sd = math.sqrt(float((h.double() ** 2).sum()) * p / (1 - p))
    assert abs(float(out.double().sum() - h.double().sum())) <= 5 * sd


@pytest.mark.parametrize("func", FUNCS)
def test_p_zero_is_identity_and_p_one_is_zeros(func):
    x = torch.arange(16, dtype=torch.float32).reshape(2, 8)
    assert func(x, 0.0) is x
    out = func(x, 1.0)
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("func", FUNCS)
def test_p_one_gradient_is_zero_not_nan(func):
    x = torch.randn(4, 5, requires_grad=True)
    func(x, 1.0).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("func", FUNCS)
def test_not_training_is_identity(func):
    x = torch.randn(3, 4)
    assert func(x, 0.5, training=False) is x


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("p", [0.2, 0.5, 0.7])
def test_gradient_is_mask_over_keep_probability(func, p):
    x = (torch.rand(64, 32) + 0.1).requires_grad_()
    upstream = torch.randn(64, 32)
    out = func(x, p, generator=torch.Generator().manual_seed(3))
    out.backward(upstream)
    mask = (out != 0).float()
    torch.testing.assert_close(x.grad, upstream * mask / (1 - p))


@pytest.mark.parametrize("func", FUNCS)
def test_gradcheck_float64(func):
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    # gradcheck evaluates several times: fix the mask by reseeding a generator on each call
    assert torch.autograd.gradcheck(lambda t: func(t, 0.3, generator=torch.Generator().manual_seed(5)), (x,))


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("p", [-0.1, 1.0001, float("nan"), float("inf"), -float("inf")])
def test_bad_p_raises_value_error_naming_it(func, p):
    with pytest.raises(ValueError, match=r"between 0 and 1, but got " + str(p).replace("+", r"\+")):
        func(torch.ones(3), p)


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("p", ["0.5", None, True, torch.tensor([0.5, 0.5])])
def test_non_number_p_raises_type_error(func, p):
    with pytest.raises(TypeError, match="real number in \\[0, 1\\]"):
        func(torch.ones(3), p)


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_non_floating_tensor_raises_type_error(func, dtype):
    with pytest.raises(TypeError, match=f"floating-point tensor.*{dtype}"):
        func(torch.ones(3, dtype=dtype), 0.5)


@pytest.mark.parametrize("func", FUNCS)
def test_non_tensor_raises_type_error(func):
    with pytest.raises(TypeError, match="torch.Tensor.*list"):
        func([1.0, 2.0], 0.5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("func", FUNCS)
def test_dtypes_keep_dtype_and_scale(func, dtype):
    x = torch.ones(100, 100, dtype=dtype)
    out = func(x, 0.5, generator=torch.Generator().manual_seed(0))
    assert out.dtype == dtype
    assert set(out.unique().tolist()) == {0.0, 2.0}


@pytest.mark.parametrize("func", FUNCS)
def test_same_generator_seed_same_mask(func):
    x = torch.randn(33, 17)
    a = func(x, 0.4, generator=torch.Generator().manual_seed(11))
    b = func(x, 0.4, generator=torch.Generator().manual_seed(11))
    assert torch.equal(a, b)
    assert not torch.equal(a, func(x, 0.4, generator=torch.Generator().manual_seed(12)))


@pytest.mark.parametrize("func", FUNCS)
def test_global_seed_reproduces(func):
    x = torch.randn(50, 50)
    torch.manual_seed(99)
    a = func(x, 0.5)
    torch.manual_seed(99)
    assert torch.equal(a, func(x, 0.5))


def test_inplace_writes_into_input_and_backprops():
    x = torch.ones(20, 20)
    out = dropout(x, 0.5, inplace=True, generator=torch.Generator().manual_seed(0))
    assert out is x and set(x.unique().tolist()) == {0.0, 2.0}
    leaf = torch.rand(8, 8, requires_grad=True)
    h = leaf * 1.0
    y = dropout(h, 0.5, inplace=True, generator=torch.Generator().manual_seed(1))
    y.sum().backward()
    torch.testing.assert_close(leaf.grad, (y != 0).float() * 2.0)


@pytest.mark.parametrize("func", FUNCS)
def test_non_contiguous_input(func):
    x = torch.ones(64, 48).t()
    out = func(x, 0.5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (48, 64) and set(out.unique().tolist()) == {0.0, 2.0}
