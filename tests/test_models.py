import pytest
import torch

from droplab.models import MLP, DropoutMLP, DropoutMLPScratch, build_model


def lecture(cls):
    return cls(10, 256, 256, 0.5, 0.5)


@pytest.mark.parametrize("cls", [DropoutMLPScratch, DropoutMLP])
def test_train_mode_is_stochastic_eval_mode_is_deterministic(cls):
    torch.manual_seed(0)
    model = lecture(cls)
    x = torch.rand(32, 1, 28, 28)
    assert model(x).shape == (32, 10)
    assert not torch.equal(model(x), model(x))  # different masks
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("cls", [DropoutMLPScratch, DropoutMLP])
def test_eval_mode_equals_the_network_without_dropout(cls):
    torch.manual_seed(0)
    model = lecture(cls).eval()
    torch.manual_seed(0)
    plain = build_model("plain", (256, 256), (0.0, 0.0)).eval()
    x = torch.rand(16, 784)
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_models_start_from_the_same_weights_for_one_seed():
    states = []
    for name in ("scratch", "concise", "plain"):
        torch.manual_seed(42)
        states.append([p.detach().clone() for p in build_model(name, (64, 32), (0.5, 0.5)).parameters()])
    for other in states[1:]:
        assert all(torch.equal(a, b) for a, b in zip(states[0], other))


def test_scratch_dropout_zeroes_hidden_units_only_while_training():
    torch.manual_seed(0)
    model = DropoutMLPScratch(10, 50, 40, 0.5, 0.5)
    seen = []
    model.lin2.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].clone()))
    x = torch.rand(8, 784)
    model(x)
    h1 = torch.relu(model.lin1(x))
    kept = seen[0] != 0
    torch.testing.assert_close(seen[0][kept], 2 * h1[kept])  # survivors scaled by 1/(1-p)
    assert (seen[0] == 0).sum() > (h1 == 0).sum()  # more zeros than the ReLU alone makes
    model.eval()
    model(x)
    torch.testing.assert_close(seen[1], h1)


def test_plain_has_no_dropout_and_general_mlp_depth():
    plain = build_model("plain", (32, 16, 8), (0.5, 0.5, 0.5))
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())
    deep = MLP((32, 16, 8), (0.1, 0.0, 0.3), impl="torch")
    drops = [m.p for m in deep.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.1, 0.3]
    assert deep(torch.rand(2, 784)).shape == (2, 10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="one dropout probability per hidden layer"):
        MLP((32, 16), (0.5,))
    with pytest.raises(ValueError, match="impl must be one of"):
        MLP(impl="numpy")
    with pytest.raises(ValueError, match="model must be one of scratch, concise, plain, mlp, vit; got 'big'"):
        build_model("big", (8,), (0.5,))
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        DropoutMLPScratch(10, 8, 8, 1.5, 0.5)
    with pytest.raises(ValueError, match="between 0 and 1, but got -0.1"):
        build_model("concise", (8, 8), (0.5, -0.1))


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_scratch_model_dropout_impls(impl):
    torch.manual_seed(0)
    model = build_model("scratch", (64, 32), (0.5, 0.5), dropout_impl=impl)
    assert model.impl == impl
    x = torch.rand(8, 784)
    assert not torch.equal(model(x), model(x))
    deep = build_model("scratch", (16, 16, 16), (0.5, 0.5, 0.5), dropout_impl=impl)
    assert all(m.impl == impl for m in deep.modules() if hasattr(m, "impl"))
    with pytest.raises(ValueError, match="dropout impl must be one of"):
        build_model("scratch", (8, 8), (0.5, 0.5), dropout_impl="cuda")


def test_noise_active_keeps_batch_norm_in_eval_and_restores_the_mode():
    from droplab.ensemble import predict_mc
    from droplab.models import noise_active

    torch.manual_seed(0)
    model = MLP([16, 16], [0.5, 0.5], norm="batch").eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    with noise_active(model):
        assert model.training and not any(m.training for m in norms)
        assert not torch.equal(model(torch.rand(4, 784)), model(torch.rand(4, 784)))
    assert not model.training
    before = [m.running_mean.clone() for m in norms]
    probs = predict_mc(model, torch.rand(64, 784), ks=(1, 5))
    assert probs[5].shape == (64, 10) and not model.training
    # Monte-Carlo dropout samples masks, not batch statistics: the running statistics stay as they were
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))
