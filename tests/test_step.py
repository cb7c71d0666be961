"""droplab.train.step: the MLPs' training step written out, against autograd, bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from droplab.models import MLP, DropoutMLP, DropoutMLPScratch
from droplab.train.step import written_out

BUILDS = {
    "scratch": lambda: DropoutMLPScratch(10, 64, 32, 0.5, 0.2),
    "scratch p=0": lambda: DropoutMLPScratch(10, 64, 32, 0.0, 0.0),
    "mlp": lambda: MLP((64, 48, 32), (0.5, 0.0, 0.3)),
    "mlp one layer": lambda: MLP((40,), (0.6,)),
    "plain": lambda: MLP((64, 32), (0.0, 0.0)),
}


def _batch(seed, n=50, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 784, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g)


def _autograd(model, x, y):
    for p in model.parameters():
        p.grad = None
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _written(model, x, y):
    step = written_out(model, "fp32")
    assert step is not None and step.applies(x)
    loss = step.loss(x, y)
    step.backward()
    return loss, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", BUILDS)
def test_loss_and_gradients_are_autograds_bit_for_bit(name, dtype):
    torch.manual_seed(0)
    model = BUILDS[name]().to(dtype)
    for seed in range(3):  # the second and third steps write into the first step's gradient buffers
        x, y = _batch(seed, dtype=dtype)
        torch.manual_seed(seed)
        want_loss, want = _autograd(model, x, y)
        torch.manual_seed(seed)
        got_loss, got = _written(model, x, y)
        assert torch.equal(got_loss, want_loss)
        for a, b in zip(got, want):
            assert torch.equal(a, b)
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad


def test_gradients_are_written_into_the_same_buffers():
    model = BUILDS["scratch"]()
    x, y = _batch(0)
    _written(model, x, y)
    buffers = [p.grad.data_ptr() for p in model.parameters()]
    _written(model, *_batch(1))
    assert [p.grad.data_ptr() for p in model.parameters()] == buffers


def test_eval_mode_has_no_dropout():
    torch.manual_seed(0)
    model = BUILDS["mlp"]().eval()
    x, y = _batch(0)
    want_loss, want = _autograd(model, x, y)
    got_loss, got = _written(model, x, y)
    assert torch.equal(got_loss, want_loss) and all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("model", [
    DropoutMLP(10, 16, 16, 0.5, 0.5),  # torch's nn.Dropout
    DropoutMLPScratch(10, 16, 16, 0.5, 0.5, impl="reference"),
    MLP((16,), (0.5,), norm="batch"),
    MLP((16,), (0.5,), noise="gaussian"),
    MLP((16, 16), (0.5, 0.5), noise="dropconnect"),
    MLP((16,), (0.5,), impl="torch"),
    MLP((16,), (0.5,), dropout_impl="reference"),
])  # fmt: skip
def test_other_models_train_through_autograd(model):
    assert written_out(model, "fp32") is None


def test_other_precisions_and_inputs_train_through_autograd():
    model = BUILDS["scratch"]()
    assert written_out(model, "bf16") is None
    step = written_out(model, "fp32")
    x, _ = _batch(0)
    assert step.applies(x)
    assert not step.applies(x.double())  # the model's dtype is float32
    assert not step.applies(x.reshape(50, 28, 28))
    handle = model.lin2.register_forward_hook(lambda *args: None)
    assert not step.applies(x)  # a hook must see its module run
    handle.remove()
    assert step.applies(x)


@pytest.mark.parametrize("build", [lambda: DropoutMLPScratch(10, 16, 16, 1.0, 0.5), lambda: MLP((16, 16), (0.5, 1.0))])
def test_a_rate_of_one_trains_through_autograd(build):
    model = build()
    step = written_out(model, "fp32")
    assert step is not None and not step.applies(_batch(0)[0])  # autograd's p = 1 path draws no seed


def test_the_loss_carries_no_graph():
    model = BUILDS["scratch"]()
    loss = written_out(model, "fp32").loss(*_batch(0))
    assert not loss.requires_grad and loss.grad_fn is None


@pytest.mark.parametrize("watch", [
    lambda m: m.net.register_forward_hook(lambda *a: None),
    lambda m: m.net[1].register_full_backward_hook(lambda *a: None),
    lambda m: m.net[1].weight.register_hook(lambda g: g),
    lambda m: m.register_forward_pre_hook(lambda *a: None),
    lambda m: torch.nn.modules.module.register_module_forward_hook(lambda *a: None),
])  # fmt: skip
def test_any_hook_sends_the_step_through_autograd(watch):
    model = BUILDS["mlp"]()
    step, x = written_out(model, "fp32"), _batch(0)[0]
    handle = watch(model)
    try:
        assert not step.applies(x)
    finally:
        handle.remove()
    assert step.applies(x)


def test_a_replaced_module_sends_the_step_through_autograd():
    model = BUILDS["mlp"]()
    step, x = written_out(model, "fp32"), _batch(0)[0]
    model.net[3] = torch.nn.Dropout(0.5)
    assert not step.applies(x)
