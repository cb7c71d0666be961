"""droplab.fused: linear -> ReLU -> dropout as one autograd node, against the composed expression.

The fused path must give the composed numbers bit for bit on finite values (float32 and
float64: the same products, the same division by 1 - p), in forward and in every gradient,
and the models that use it must train exactly as they did with the composed layers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from droplab import fused
from droplab.functional import dropout
from droplab.models import MLP, DropoutMLPScratch

SHAPES = [(1, 3, 5), (7, 33, 129), (256, 784, 256), (64, 256, 300)]  # (batch, in, out): odd sizes too


def composed(x, w, b, p):
    return dropout(torch.relu(F.linear(x, w, b)), p)


def both(x, w, b, p, seed=5):
    """(fused output, composed output) and their gradients w.r.t. x, w, b for a random upstream gradient."""
    results = []
    upstream = torch.randn(x.shape[0], w.shape[0], dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    for fn in (fused.linear_relu_dropout, composed):
        leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, w, b)]
        torch.manual_seed(seed)
        out = fn(*leaves, p)
        out.backward(upstream)
        results.append((out.detach(), *[t.grad for t in leaves if t is not None]))
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_fused_equals_composed_bit_for_bit(dtype, shape, p):
    n, i, o = shape
    g = torch.Generator().manual_seed(sum(shape))
    x, w, b = (torch.randn(s, dtype=dtype, generator=g) for s in ((n, i), (o, i), (o,)))
    assert fused.fusable(x, w)
    got, want = both(x, w, b, p)
    for a, c in zip(got, want):
        assert a.dtype == c.dtype and a.shape == c.shape
        assert torch.equal(a, c)  # tolerance 0 (equal also counts -0.0 == 0.0)


def test_without_bias_and_without_input_gradient():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(9, 20, generator=g), torch.randn(30, 20, generator=g)
    got, want = both(x, w, None, 0.3)
    assert all(torch.equal(a, c) for a, c in zip(got, want))
    w1 = w.clone().requires_grad_()
    out = fused.linear_relu_dropout(x, w1, None, 0.3)  # x needs no gradient: only the weight's
    out.sum().backward()
    assert w1.grad is not None and w1.grad.shape == w.shape


def test_kept_and_dropped_values():
    x, w = torch.eye(4), torch.tensor([[1.0, -1.0, 0.0, 2.0]] * 1024)  # rows of relu(x W^T): 1, 0, 0, 2
    torch.manual_seed(0)
    out = fused.linear_relu_dropout(x, w, None, 0.25)
    assert set(out.unique().tolist()) <= set((torch.tensor([0.0, 1.0, 2.0]) / torch.tensor(0.75)).tolist())
    kept = (out[0] != 0).float().mean().item()  # 1024 draws, keep 0.75: 5 sigma is 0.068
    assert abs(kept - 0.75) < 5 * (0.75 * 0.25 / 1024) ** 0.5
    assert torch.equal(out[1], torch.zeros(1024)) and torch.equal(out[2], torch.zeros(1024))


def test_double_backward_matches_composed():
    # a gradient penalty: d/dW |d(c . f(x, W))/dx|^2, with f fused and composed
    g = torch.Generator().manual_seed(3)
    x, w, b = torch.randn(8, 6, generator=g), torch.randn(5, 6, generator=g), torch.randn(5, generator=g)
    c = torch.randn(8, 5, generator=g)
    results = []
    for fn in (fused.linear_relu_dropout, composed):
        xx, ww = x.clone().requires_grad_(), w.clone().requires_grad_()
        torch.manual_seed(2)
        (gx,) = torch.autograd.grad((fn(xx, ww, b, 0.5) * c).sum(), xx, create_graph=True)
        gx.pow(2).sum().backward()
        results.append((gx.detach(), ww.grad))
    (gx_fused, gw_fused), (gx_composed, gw_composed) = results
    assert torch.equal(gx_fused, gx_composed)
    assert torch.allclose(gw_fused, gw_composed, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_edges_of_p_are_the_composed_ones(p):
    x, w, b = torch.randn(4, 3), torch.randn(5, 3), torch.randn(5)
    assert torch.equal(fused.linear_relu_dropout(x, w, b, p), composed(x, w, b, p))
    assert torch.equal(fused.linear_relu_dropout(x, w, b, 0.5, training=False), torch.relu(F.linear(x, w, b)))


def test_bad_p_is_refused():
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        fused.linear_relu_dropout(torch.randn(2, 3), torch.randn(4, 3), None, 1.5)


def test_not_fusable_falls_back_to_composed():
    x, w, b = torch.randn(4, 3), torch.randn(5, 3), torch.randn(5)
    assert not fused.fusable(x.t().contiguous().t(), w)  # not contiguous
    assert not fused.fusable(x.half(), w.half())
    assert not fused.fusable(x[None], w)  # not 2-D
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused.fusable(x, w)
        torch.manual_seed(0)
        out = fused.linear_relu_dropout(x, w, b, 0.5)
        torch.manual_seed(0)
        assert torch.equal(out, composed(x, w, b, 0.5)) and out.dtype == torch.bfloat16


def _stored_bytes(fn, *args):
    """Bytes of the distinct storages autograd saves for backward (a tensor saved twice counts once)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return sum(storages.values())


def test_fused_model_keeps_one_activation_fewer_per_hidden_layer(monkeypatch):
    torch.manual_seed(0)
    model, x = DropoutMLPScratch(10, 256, 256, 0.5, 0.5), torch.randn(128, 784)
    fused_bytes = _stored_bytes(model, x)
    monkeypatch.setattr(fused, "fusable", lambda *args: False)
    composed_bytes = _stored_bytes(model, x)
    assert composed_bytes - fused_bytes == 2 * 128 * 256 * 4  # the two ReLU outputs, float32


def _train(model, steps=5):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(9)
    torch.manual_seed(4)
    for _ in range(steps):
        x, y = torch.randn(64, 784, generator=g), torch.randint(0, 10, (64,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("build", [lambda: DropoutMLPScratch(10, 64, 32, 0.5, 0.2),
                                   lambda: MLP((64, 48, 32), (0.5, 0.0, 0.3))])  # fmt: skip
def test_models_train_bit_for_bit_as_composed(build, monkeypatch):
    torch.manual_seed(1)
    a, b = build(), build()
    b.load_state_dict(a.state_dict())
    got = _train(a)
    with monkeypatch.context() as m:
        m.setattr(fused, "fusable", lambda *args: False)  # the composed layers
        want = _train(b)
    assert all(torch.equal(u, v) for u, v in zip(got, want))


def test_mlp_fuses_linear_relu_fast_dropout_only():
    assert MLP((8, 8), (0.5, 0.5)).fusable_at == {1, 4}  # Flatten, [Linear, ReLU, Dropout] x 2, Linear
    assert MLP((8, 8), (0.5, 0.0)).fusable_at == {1}  # no dropout after the second ReLU
    assert MLP((8, 8), (0.5, 0.5), impl="torch").fusable_at == frozenset()
    assert MLP((8, 8), (0.5, 0.5), dropout_impl="reference").fusable_at == frozenset()
    assert MLP((8, 8), (0.5, 0.5), norm="batch").fusable_at == frozenset()
    assert MLP((8, 8), (0.5, 0.5), noise="gaussian").fusable_at == frozenset()


def test_mlp_hooks_still_see_their_modules(monkeypatch):
    model, seen = MLP((16, 16), (0.5, 0.5), num_inputs=8), []
    calls = []
    def spy(x, w, b, p, seed):
        calls.append(1)
        return torch.zeros(len(x), len(w))

    monkeypatch.setattr(fused, "_LinearReLUDropout", type("Spy", (), {"apply": staticmethod(spy)}))
    handle = model.net[2].register_forward_hook(lambda m, i, o: seen.append(o))
    model(torch.randn(4, 8))
    assert len(seen) == 1  # the first hidden layer ran composed, so its ReLU's hook fired
    assert len(calls) == 1  # the second (unhooked) one was fused
    handle.remove()
    model.eval()
    model(torch.randn(4, 8))
    assert len(calls) == 1  # eval mode: nothing to drop, nothing fused


def test_mlp_follows_a_dropout_layer_switched_off():
    model = MLP((16,), (0.5,), num_inputs=8)
    model.net[3].eval()  # the dropout layer alone in eval mode: no dropout
    x = torch.randn(4, 8)
    assert torch.equal(model(x), model.net[4](torch.relu(model.net[1](x))))
    model.net[3].train()
    model.net[3].p = 0.0  # a schedule may change p during training
    assert torch.equal(model(x), model.net[4](torch.relu(model.net[1](x))))


def test_mlp_follows_modules_replaced_after_construction():
    model, x = MLP((16,), (0.5,), num_inputs=8), torch.randn(4, 8)
    model.net[3] = torch.nn.Identity()  # no dropout any more
    assert model.fusable_at == frozenset()
    assert torch.equal(model(x), model.net(x))


@pytest.mark.parametrize("watch", [
    lambda m: m.net.register_forward_hook(lambda *a: None),
    lambda m: m.net[1].register_full_backward_hook(lambda *a: None),
    lambda m: m.net[1].weight.register_hook(lambda g: g),
])  # fmt: skip
def test_mlp_hooks_anywhere_turn_fusion_off(watch, monkeypatch):
    model, calls = MLP((16,), (0.5,), num_inputs=8), []
    spy = type("Spy", (), {"apply": staticmethod(lambda *a: calls.append(1))})
    monkeypatch.setattr(fused, "_LinearReLUDropout", spy)
    handle = watch(model)
    model(torch.randn(4, 8, requires_grad=True)).sum().backward()
    handle.remove()
    assert calls == []
