import pytest
import torch

from droplab.nn import Dropout


def test_repr_matches_torch():
    assert repr(Dropout(0.2)) == repr(torch.nn.Dropout(0.2))
    assert repr(Dropout()) == "Dropout(p=0.5, inplace=False)"


@pytest.mark.parametrize("p", [-0.5, 1.5, float("nan")])
def test_constructor_rejects_bad_p_like_torch(p):
    if p == p:  # torch.nn.Dropout accepts NaN; droplab refuses it
        with pytest.raises(ValueError, match="between 0 and 1"):
            torch.nn.Dropout(p)
    with pytest.raises(ValueError, match=f"between 0 and 1, but got {p}"):
        Dropout(p)


def test_train_drops_and_eval_is_identity():
    m = Dropout(0.5)
    x = torch.ones(100, 100)
    torch.manual_seed(0)
    y = m(x)
    assert set(y.unique().tolist()) == {0.0, 2.0}
    m.eval()
    assert m(x) is x


def test_inplace_module():
    m = Dropout(0.5, inplace=True)
    x = torch.ones(10, 10)
    assert m(x) is x
    assert set(x.unique().tolist()) <= {0.0, 2.0}


def test_in_sequential_gradients_flow():
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), Dropout(0.3), torch.nn.Linear(8, 1))
    net(torch.randn(4, 8)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_reference_impl_layer():
    m = Dropout(0.5, impl="reference")
    assert repr(m) == "Dropout(p=0.5, inplace=False, impl='reference')"
    torch.manual_seed(0)
    y = m(torch.ones(50, 50))
    assert set(y.unique().tolist()) == {0.0, 2.0}
    x = torch.ones(10, 10)
    assert Dropout(0.5, inplace=True, impl="reference")(x) is x
    with pytest.raises(ValueError, match="dropout impl must be one of fast, reference; got 'numpy'"):
        Dropout(0.5, impl="numpy")
