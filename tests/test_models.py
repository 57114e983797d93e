import pytest
import torch
from torch import nn

from utils.models import ACTIVATIONS, linear_layers, mlp


def test_mlp_layers_names_and_shapes():
    model = mlp([8, 5, 4, 3])
    names = [name for name, _ in model.named_children()]
    assert names == ["fc1", "act1", "fc2", "act2", "fc3"]
    assert model.fc1.weight.shape == (5, 8) and model.fc3.weight.shape == (3, 4)
    assert model(torch.zeros(2, 8)).shape == (2, 3)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_activations(activation):
    model = mlp([3, 4, 2], activation=activation)
    assert model(torch.randn(5, 3)).shape == (5, 2)


def test_mlp_relu_hidden_activation_is_applied():
    model = mlp([2, 2, 1], activation="relu", bias=False)
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        model.fc2.weight.copy_(torch.tensor([[1.0, 1.0]]))
    # relu(x) + relu(-x) = |x|
    assert model(torch.tensor([[-3.0, 0.0]])).item() == 3.0


def test_mlp_without_bias_and_float64():
    model = mlp([3, 2], bias=False, dtype=torch.float64)
    assert model.fc1.bias is None and model.fc1.weight.dtype == torch.float64


@pytest.mark.parametrize("sizes", [[3], [], [3, 0], [3, -1, 2], [3, 2.5], "34", [3, True]])
def test_mlp_rejects_bad_sizes(sizes):
    with pytest.raises(ValueError, match="sizes"):
        mlp(sizes)


def test_mlp_rejects_bad_activation_bias_dtype():
    with pytest.raises(ValueError, match="activation"):
        mlp([2, 2], activation="swish")
    with pytest.raises(TypeError, match="bias"):
        mlp([2, 2], bias=1)
    with pytest.raises(ValueError, match="dtype"):
        mlp([2, 2], dtype=torch.int64)


def test_linear_layers_in_order_and_errors():
    model = mlp([4, 3, 2])
    assert [name for name, _ in linear_layers(model)] == ["fc1", "fc2"]
    with pytest.raises(ValueError, match="no prunable layer"):
        linear_layers(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="model"):
        linear_layers("not a model")


def test_prunable_layers_and_names():
    from utils.models import prunable_layers, prunable_names

    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2, 3))
    assert [n for n, _ in prunable_layers(conv)] == ["0", "3"]
    assert prunable_names(mlp([4, 3, 2])) == ["fc1.weight", "fc2.weight"]
    with pytest.raises(ValueError, match="no prunable layer"):
        prunable_layers(nn.ReLU())
    with pytest.raises(TypeError, match="model"):
        prunable_names("net")


def test_kaiming_init_and_zero_biases_in_place():
    from utils.models import kaiming_init, zero_biases

    net = mlp([400, 300, 10])
    assert kaiming_init(net, seed=3) is net
    std = float(net.fc1.weight.detach().std())
    assert abs(std - (2 / 400) ** 0.5) < 0.002 and float(net.fc1.bias.detach().abs().sum()) == 0.0
    again = kaiming_init(mlp([400, 300, 10]), seed=3)
    assert torch.equal(again.fc2.weight, net.fc2.weight)                 # seeded
    biased = mlp([3, 2])
    assert float(zero_biases(biased).fc1.bias.detach().abs().sum()) == 0.0
    with pytest.raises(ValueError, match="seed"):
        kaiming_init(net, seed=-1)


def test_digits_convnet_shapes_and_reexport():
    import utils.pruning
    from utils.models import digits_convnet, prunable_names

    net = digits_convnet(seed=0)
    params = dict(net.named_parameters())
    assert [params[n].numel() for n in prunable_names(net)] == [72, 1152, 2304, 10240]
    assert net(torch.zeros(5, 64)).shape == (5, 10)
    assert utils.pruning.digits_convnet is digits_convnet             # chapters import it from either
    with pytest.raises(ValueError, match="channels"):
        digits_convnet(channels=(8, 0))
