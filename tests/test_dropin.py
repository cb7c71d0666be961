"""droplab's dropout as a drop-in for torch's: the behaviours PyTorch's own dropout tests check
(``test/nn/test_dropout.py`` and the dropout cases of ``test/test_nn.py``), each compared with
torch on the same input. The table in ``docs/dropin.md`` lists them."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as TF
from torch.autograd import forward_ad

from droplab import functional as F
from droplab import nn as dnn


def test_the_layers_are_torchs_classes_for_isinstance():
    for ours, theirs in [(dnn.Dropout, torch.nn.Dropout), (dnn.Dropout1d, torch.nn.Dropout1d),
                         (dnn.Dropout2d, torch.nn.Dropout2d), (dnn.Dropout3d, torch.nn.Dropout3d)]:  # fmt: skip
        m = ours(0.25)
        assert isinstance(m, theirs) and repr(m) == repr(theirs(0.25))


def test_repr_keeps_p_as_given():
    assert repr(dnn.Dropout(1)) == repr(torch.nn.Dropout(1)) == "Dropout(p=1, inplace=False)"
    assert repr(dnn.Dropout(0)) == "Dropout(p=0, inplace=False)"


@pytest.mark.parametrize("p", [-0.1, 1.1, float("nan")])
def test_bad_p_is_refused_as_torch_refuses_it(p):
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        dnn.Dropout(p)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        F.dropout(torch.ones(3), p)


def test_p_as_a_zero_dim_tensor():
    x = torch.ones(1000)
    y = F.dropout(x, torch.tensor(0.5), generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, F.dropout(x, 0.5, generator=torch.Generator().manual_seed(0)))
    assert dnn.Dropout(torch.tensor(0.25)).eval()(x) is x


def test_integer_tensors_pass_through_in_eval_and_at_p0_and_fail_in_training_as_torchs():
    x = torch.arange(6)
    assert F.dropout(x, 0.5, training=False) is x and dnn.Dropout(0.5).eval()(x) is x
    assert torch.equal(F.dropout(x, 0.0), TF.dropout(x, 0.0))
    with pytest.raises((TypeError, RuntimeError)):
        TF.dropout(x, 0.5)
    with pytest.raises(TypeError, match="dropout expects a floating-point tensor"):
        F.dropout(x, 0.5)


def test_p1_gives_input_times_zero_as_torch_nan_included():
    x = torch.tensor([1.0, float("nan"), float("inf"), -2.0])
    assert torch.equal(F.dropout(x, 1.0).isnan(), TF.dropout(x, 1.0).isnan())
    assert torch.equal(F.dropout(x, 1.0).nan_to_num(), TF.dropout(x, 1.0).nan_to_num())


@pytest.mark.parametrize("make", [
    lambda: torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
    lambda: torch.randn(6, 7).t(),
    lambda: torch.randn(4, 5, 6).permute(2, 0, 1),
    lambda: torch.randn(3, 4, 5, 6, 2).to(memory_format=torch.channels_last_3d),
])  # fmt: skip
def test_memory_layout_is_kept_as_torch_keeps_it(make):
    x = make()
    y = F.dropout(x, 0.5, generator=torch.Generator().manual_seed(1))
    assert y.stride() == TF.dropout(x, 0.5).stride() == torch.empty_like(x).stride()
    dense = F.dropout(x.contiguous(), 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y, dense)  # the same mask: by the logical (row-major) index, not the memory order
    x.requires_grad_(True)
    out = F.dropout(x, 0.5, generator=torch.Generator().manual_seed(1))
    out.backward(torch.ones_like(out))
    assert torch.equal(x.grad, (dense != 0).float() * 2)


def test_forward_mode_ad_carries_the_tangent():
    x, t = torch.randn(50, 40), torch.randn(50, 40)
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x, t)
        out = F.dropout(dual, 0.3, generator=torch.Generator().manual_seed(4))
        primal, tangent = forward_ad.unpack_dual(out)
    mask = (primal != 0).float()
    assert tangent is not None and torch.equal(tangent, t * mask / 0.7)
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x, t)
        out = F.dropout(dual, 0.3, generator=torch.Generator().manual_seed(4), broadcast_dims=(1,))
        primal, tangent = forward_ad.unpack_dual(out)
    assert tangent is not None and torch.equal(tangent, t * (primal != 0).float() / 0.7)


def test_torch_func_transforms_are_refused_with_a_clear_error_not_silently_wrong():
    with pytest.raises(NotImplementedError, match="does not support torch.func transforms"):
        torch.func.vmap(lambda t: F.dropout(t, 0.5))(torch.ones(3, 4))
    with pytest.raises(NotImplementedError, match="does not support torch.func transforms"):
        torch.func.grad(lambda t: F.dropout(t, 0.5).sum())(torch.ones(4))


@pytest.mark.parametrize("shape", [(0,), (0, 5), (), (1,)])
def test_empty_and_zero_dim_inputs_as_torch(shape):
    x = torch.ones(shape)
    y = F.dropout(x, 0.5)
    assert y.shape == TF.dropout(x, 0.5).shape == x.shape and y.dtype == x.dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes_are_kept(dtype):
    x = torch.ones(64, dtype=dtype)
    assert F.dropout(x, 0.5).dtype == dtype == dnn.Dropout2d(0.5)(torch.ones(2, 3, 4, 4, dtype=dtype)).dtype


def test_inplace_writes_into_the_input_as_torch():
    x = torch.ones(100)
    out = F.dropout(x, 0.5, inplace=True)
    assert out is x and set(x.unique().tolist()) == {0.0, 2.0}
    m = dnn.Dropout(0.5, inplace=True)
    y = torch.ones(100)
    assert m(y) is y


def test_the_layer_survives_deepcopy_pickle_and_state_dict():
    m = dnn.Dropout(0.3)
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert repr(other) == repr(m) and other.p == m.p
    assert m.state_dict() == {} and torch.nn.Sequential(m, torch.nn.Linear(2, 2)).train(False)[0].training is False


def test_compiled_dropout_keeps_the_layout_and_the_mask_of_eager():
    x = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    compiled = torch.compile(lambda t: F.dropout(t, 0.5), backend="aot_eager", fullgraph=True)
    torch.manual_seed(2)
    eager = F.dropout(x, 0.5)
    torch.manual_seed(2)
    out = compiled(x)
    assert torch.equal(out, eager) and out.stride() == eager.stride() == x.stride()


@pytest.mark.parametrize("make", [lambda: torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
                                  lambda: torch.randn(6, 7).t(), lambda: torch.randn(8, 9)])  # fmt: skip
def test_the_custom_ops_fake_gives_the_real_ops_shape_dtype_and_strides(make):
    from torch._subclasses.fake_tensor import FakeTensorMode

    x, seed = make(), torch.tensor(3)
    real = F.seeded_dropout_op(x, 0.5, seed)
    with FakeTensorMode() as mode:
        fake = F.seeded_dropout_op(mode.from_tensor(x), 0.5, mode.from_tensor(seed))
    assert (fake.shape, fake.dtype, fake.stride()) == (real.shape, real.dtype, real.stride())
