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
