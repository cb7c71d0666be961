"""droplab's dropout under torch's graph transforms: each one works and gives dropout's semantics, or is
refused with a message that says what to use. The rows of ``docs/dropin.md`` these tests back:
``torch.fx.symbolic_trace``, TorchScript (``torch.jit.script``, ``torch.jit.trace``), meta and fake
tensors, ``torch.compile`` (``aot_eager`` with dynamic shapes, Inductor) and ``torch.export``.

Semantics checked on the outputs: every element is 0 or ``x / (1 - p)``; the gradient is the same mask
and scale; ``torch.manual_seed`` reproduces the mask (the same one as eager droplab); each call draws a
new mask; the kept fraction lies within 5 binomial standard deviations of ``1 - p``."""

from __future__ import annotations

import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

from droplab import functional as F
from droplab import nn as dnn

P = 0.5  # 1 / (1 - p) = 2 exactly: kept elements equal 2 * x bit for bit

LAYERS = [lambda: dnn.Dropout(P), lambda: dnn.Dropout(P, broadcast_dims=(2, 3)), lambda: dnn.Dropout1d(P),
          lambda: dnn.Dropout2d(P), lambda: dnn.Dropout3d(P), lambda: dnn.DropPath(P)]  # fmt: skip


class _Each(torch.nn.Module):
    """Every layer of LAYERS on the same (4, 3, 5, 6) input (Dropout1d's as (4, 3, 30)), after ``first``;
    their outputs stacked."""

    def __init__(self, first: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.first = first or torch.nn.Identity()
        self.layers = torch.nn.ModuleList(make() for make in LAYERS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        return torch.stack([layer(x.flatten(2)).view_as(x) if isinstance(layer, dnn.Dropout1d) else layer(x)
                            for layer in self.layers])  # fmt: skip


def _input_for(layer: torch.nn.Module) -> torch.Tensor:
    return _input(2, 3, 24) if isinstance(layer, dnn.Dropout1d) else _input(2, 3, 4, 6)


# each layer's functional form, and the dimensions it shares a keep decision along, on a 4-D input
FUNCTIONS = {
    "dropout": (lambda t: F.dropout(t, P), ()),
    "broadcast_dims": (lambda t: F.dropout(t, P, broadcast_dims=(2, 3)), (2, 3)),
    "dropout1d": (lambda t: F.dropout1d(t.flatten(2), P).unflatten(2, t.shape[2:]), (2, 3)),
    "dropout2d": (lambda t: F.dropout2d(t, P), (2, 3)),
    "dropout3d": (lambda t: F.dropout3d(t, P), (1, 2, 3)),  # a 4-D input is (C, D, H, W)
    "drop_path": (lambda t: F.drop_path(t, P, training=True), (1, 2, 3)),
}


def _input(*shape: int) -> torch.Tensor:
    return torch.rand(*shape) + 0.5  # no zeros: a zero output means dropped


def assert_dropout(x: torch.Tensor, y: torch.Tensor, shared: tuple[int, ...] = ()) -> torch.Tensor:
    """``y`` is dropout of ``x`` at rate P (0 or 2x, one decision along ``shared``); return its keep-mask."""
    kept = y != 0
    assert torch.equal(y[kept], x[kept] / (1 - P))
    if shared:
        assert torch.equal(kept, kept.any(dim=shared, keepdim=True).expand_as(kept))
    return kept


def assert_binomial(kept: torch.Tensor) -> None:
    n = kept.numel()
    assert abs(int(kept.sum()) - n * (1 - P)) <= 5 * math.sqrt(n * P * (1 - P))


# torch.fx.symbolic_trace: the layers as call_module nodes (as torch's), the functions as call_function


def test_fx_records_each_layer_as_a_module_call_that_follows_train_and_eval():
    model = _Each()
    gm = torch.fx.symbolic_trace(model)
    called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    assert called == {"first"} | {f"layers.{i}" for i in range(len(LAYERS))}
    x = _input(4, 3, 5, 6)
    torch.manual_seed(0)
    expected = model(x)
    torch.manual_seed(0)
    assert torch.equal(gm(x), expected) and not torch.equal(gm(x), expected)  # the same masks; new ones per call
    assert torch.equal(gm.eval()(x), x.expand(len(LAYERS), *x.shape))


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_fx_records_the_functions_as_calls_that_draw_a_mask_per_call(name):
    fn, shared = FUNCTIONS[name]
    gm = torch.fx.symbolic_trace(fn)
    calls = [n.target for n in gm.graph.nodes if n.op == "call_function"]  # (and dropout1d's getattr(t, "shape"))
    assert [getattr(f, "__module__", "") in ("droplab.functional", "droplab.structured") for f in calls] == [
        True] + [False] * (len(calls) - 1)  # fmt: skip
    x = _input(6, 3, 5, 6)
    torch.manual_seed(1)
    expected = fn(x)
    torch.manual_seed(1)
    out = gm(x)
    assert torch.equal(out, expected) and not torch.equal(gm(x), out)
    assert_dropout(x, out, shared)


def test_fx_of_a_layer_as_the_root_records_the_function_as_for_torchs_layer():
    gm, theirs = torch.fx.symbolic_trace(dnn.Dropout(P)), torch.fx.symbolic_trace(torch.nn.Dropout(P))
    assert [n.op for n in gm.graph.nodes] == [n.op for n in theirs.graph.nodes] == [
        "placeholder", "call_function", "output"]  # fmt: skip
    assert gm.graph.find_nodes(op="call_function", target=F.dropout)
    x = _input(100)
    torch.manual_seed(2)
    expected = F.dropout(x, P)
    torch.manual_seed(2)
    assert torch.equal(gm(x), expected)


# TorchScript: scripting is refused; tracing is refused in training, works in eval


@pytest.mark.parametrize("make", LAYERS)
def test_torch_jit_script_is_refused_with_what_to_use(make):
    layer = make()
    with pytest.raises(NotImplementedError, match=f"torch.jit.script cannot compile droplab's {type(layer).__name__}: "
                       "its kernel runs from Python. Use torch.compile or torch.export"):  # fmt: skip
        torch.jit.script(torch.nn.Sequential(torch.nn.Linear(6, 6), layer))


@pytest.mark.parametrize("make", LAYERS)
def test_torch_jit_trace_in_training_is_refused_not_a_constant_mask(make):
    layer = make()
    with pytest.raises(RuntimeError, match="torch.jit.trace cannot record droplab's dropout: the trace would keep "
                       "this call's mask as a constant.*Trace the model in eval"):  # fmt: skip
        torch.jit.trace(layer, _input_for(layer))
    x = _input_for(layer)
    traced = torch.jit.trace(layer.eval(), x)  # eval: the identity, as torch's traced dropout
    assert torch.equal(traced(x), x)


# meta and fake tensors: the result's metadata, no draw from the generator


def _layouts():
    x = torch.rand(4, 3, 5, 6)
    return [x, x.to(memory_format=torch.channels_last), x.transpose(1, 3), x.half(), x.bfloat16()]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_meta_tensors_give_the_real_results_metadata(name):
    fn, _ = FUNCTIONS[name]
    for x in _layouts():
        state = torch.get_rng_state()
        meta = fn(x.to("meta"))
        assert torch.equal(torch.get_rng_state(), state)
        real = fn(x)
        assert meta.is_meta and (meta.shape, meta.dtype, meta.stride()) == (real.shape, real.dtype, real.stride())


def test_meta_tensors_differentiate_and_keep_torchs_answers():
    x = torch.empty(3, 4, device="meta", requires_grad=True)
    F.dropout(x, P).sum().backward()
    assert x.grad.is_meta and x.grad.shape == x.shape
    y = torch.empty(3, 4, device="meta")
    assert F.dropout(y, P, inplace=True) is y and F.dropout(y, P, training=False) is y


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_fake_tensors_give_the_real_results_metadata_and_a_gradient(name):
    fn, _ = FUNCTIONS[name]
    for x in _layouts():
        real = fn(x)
        state = torch.get_rng_state()
        with FakeTensorMode() as mode:
            fake_x = mode.from_tensor(x).requires_grad_()
            fake = fn(fake_x)
            fake.sum().backward()
        assert torch.equal(torch.get_rng_state(), state)
        assert isinstance(fake, FakeTensor) and isinstance(fake_x.grad, FakeTensor)
        assert (fake.shape, fake.dtype, fake.stride()) == (real.shape, real.dtype, real.stride())


# torch.compile and torch.export: the mask drawn inside the graph, the same as eager's for a seed


def _check_compiled(compiled, fn, x: torch.Tensor, shared: tuple[int, ...]) -> torch.Tensor:
    """``compiled`` gives eager ``fn``'s output and gradient for a seed, and a new mask per call."""
    torch.manual_seed(3)
    expected = fn(x)
    torch.manual_seed(3)
    leaf = x.clone().requires_grad_()
    out = compiled(leaf)
    out.backward(torch.ones_like(out))
    assert torch.equal(out, expected) and torch.equal(leaf.grad, expected / x)
    again = compiled(x)
    assert not torch.equal(again, out)
    assert_dropout(x, again, shared)
    return assert_dropout(x, out, shared)


def test_compile_with_dynamic_shapes_gives_eagers_masks_at_every_size():
    for name, (fn, shared) in FUNCTIONS.items():
        compiled = torch.compile(fn, backend="aot_eager", dynamic=True, fullgraph=True)
        for shape in [(4, 3, 5, 6), (7, 2, 3, 9), (64, 16, 1, 2)]:
            _check_compiled(compiled, fn, _input(*shape), shared)
    fn, _ = FUNCTIONS["dropout"]
    torch.manual_seed(4)
    assert_binomial(torch.compile(fn, backend="aot_eager", dynamic=True)(torch.ones(300, 100)) != 0)


def test_compiled_layers_follow_train_and_eval():
    model = _Each()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = _input(4, 3, 5, 6)
    torch.manual_seed(5)
    expected = model(x)
    torch.manual_seed(5)
    assert torch.equal(compiled(x), expected)
    assert torch.equal(compiled.eval()(x), x.expand(len(LAYERS), *x.shape))


def test_inductor_gives_eagers_masks_and_gradients():
    def fn(t):
        return F.dropout(t, P), F.dropout2d(t, P)

    compiled = torch.compile(fn, fullgraph=True, dynamic=True)
    for shape in [(64, 16, 4, 4), (6, 5, 3, 3)]:
        x = _input(*shape)
        torch.manual_seed(6)
        expected = fn(x)
        torch.manual_seed(6)
        leaf = x.clone().requires_grad_()
        out = compiled(leaf)
        (out[0] + out[1]).sum().backward()
        assert all(torch.equal(a, b) for a, b in zip(out, expected))
        assert torch.equal(leaf.grad, (expected[0] + expected[1]) / x)
        assert not torch.equal(compiled(x)[0], out[0])
        assert_dropout(x, out[1], (2, 3))
        if shape[0] == 64:
            assert_binomial(assert_dropout(x, out[0]))


def test_a_generator_under_compile_is_drawn_outside_the_graph():
    x, g = _input(50), torch.Generator()
    compiled = torch.compile(lambda t: F.dropout(t, P, generator=g), backend="aot_eager")
    g.manual_seed(7)
    out = compiled(x)
    assert torch.equal(out, F.dropout(x, P, generator=g.manual_seed(7)))
    strict = torch.compile(lambda t: F.dropout(t, P, generator=g), backend="aot_eager", fullgraph=True)
    with pytest.raises(Exception, match="a torch.Generator cannot enter a graph: droplab draws the seed"):
        strict(x)


def test_export_draws_a_new_mask_per_call_the_same_as_eager_for_a_seed():
    model = _Each(torch.nn.Linear(6, 6))
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (_input(4, 3, 5, 6),), dynamic_shapes=({0: batch},))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "droplab.seeded_dropout.default" in targets
    run = program.module()
    for size in (4, 7):
        x = _input(size, 3, 5, 6)
        torch.manual_seed(8)
        expected = model(x)
        torch.manual_seed(8)
        out = run(x)
        assert torch.equal(out, expected) and not torch.equal(run(x), out)


# --- the fused residual dropout and the attention: the same transforms -------------------------------------


class _Residual(torch.nn.Module):
    """``bias_dropout_add``, ``dropout_add`` and ``scaled_dot_product_attention`` (with dropout) in one forward."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.full((6,), 0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.bias_dropout_add(x, self.bias, x, P)
        h = F.dropout_add(h, x, P)
        return F.scaled_dot_product_attention(h, x, x, dropout_p=P)


def _residual_eager(x: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return _Residual()(x)


def test_fx_records_the_residual_and_attention_functions_as_calls():
    traced = torch.fx.symbolic_trace(_Residual())
    targets = {node.target for node in traced.graph.nodes if node.op == "call_function"}
    assert {F.bias_dropout_add, F.dropout_add, F.scaled_dot_product_attention} <= targets
    x = _input(2, 5, 6)
    torch.manual_seed(3)
    assert torch.equal(traced(x), _residual_eager(x, 3))


def test_jit_trace_of_the_residual_and_attention_functions_is_refused():
    x = _input(2, 5, 6)
    for fn in (lambda t: F.dropout_add(t, t, P), lambda t: F.bias_dropout_add(t, t[0, 0], t, P),
               lambda t: F.scaled_dot_product_attention(t, t, t, dropout_p=P)):
        with pytest.raises(RuntimeError, match="torch.jit.trace cannot record droplab's dropout"):
            torch.jit.trace(fn, (x,), check_trace=False)


@pytest.mark.parametrize("kind", ["meta", "fake"])
def test_residual_and_attention_on_meta_and_fake_tensors_give_the_metadata_without_a_draw(kind):
    state = torch.random.get_rng_state()
    if kind == "meta":
        x, r, b, v = (torch.empty(s, device="meta") for s in ((2, 5, 6), (2, 5, 6), (6,), (2, 5, 3)))
        outs = [F.dropout_add(x, r, P), F.bias_dropout_add(x, b, r, P),
                F.scaled_dot_product_attention(x, x, v, None, P)]
        assert all(o.is_meta for o in outs)
    else:
        with FakeTensorMode():
            x, r, b, v = (torch.empty(s) for s in ((2, 5, 6), (2, 5, 6), (6,), (2, 5, 3)))
            outs = [F.dropout_add(x, r, P), F.bias_dropout_add(x, b, r, P),
                    F.scaled_dot_product_attention(x, x, v, None, P)]
        assert all(isinstance(o, FakeTensor) for o in outs)
    assert [tuple(o.shape) for o in outs] == [(2, 5, 6), (2, 5, 6), (2, 5, 3)]
    assert torch.equal(torch.random.get_rng_state(), state)


def test_export_of_the_residual_and_attention_functions_draws_a_new_mask_per_call():
    x = _input(2, 5, 6)
    program = torch.export.export(_Residual(), (x,))
    torch.manual_seed(0)
    a, b = program.module()(x), program.module()(x)
    assert not torch.equal(a, b)
    torch.manual_seed(0)
    assert torch.equal(program.module()(x), a)
