"""Tests of utils.per_example: eq 10 (eq-pex-trick), its Gram form (eq-pex-gram), hooks, errors."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from utils.models import mlp
from utils.per_example import (
    NormTracker,
    gram_is_cheaper,
    layer_sq_norms,
    norms_from_grads,
    per_example_grad_norms,
    per_example_grads,
    plot_norm_snapshot,
    rank_by_norm_and_loss,
    top_k_precision,
    track_norms,
    trainable_layers,
    trainable_linear_layers,
)

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def ce(output, target):
    return F.cross_entropy(output, target, reduction="none")


def untracked(model):
    """No tracker left anything on the model: no instance forward, no module hooks."""
    return all("forward" not in vars(m) and not m._forward_hooks for m in model.modules())


def naive_norms(model, loss_fn, x, y, per_layer=False):
    """One backward pass per example: the definition, eq 9."""
    rows = []
    for j in range(len(x)):
        model.zero_grad(set_to_none=True)
        loss_fn(model(x[j:j + 1]), y[j:j + 1]).sum().backward()
        sq = [sum((p.grad ** 2).sum() for p in layer.parameters() if p.grad is not None)
              for _, layer in trainable_layers(model)]
        rows.append(torch.stack([torch.as_tensor(s) for s in sq]))
    model.zero_grad(set_to_none=True)
    sq = torch.stack(rows)
    return sq.sqrt() if per_layer else sq.sum(1).sqrt()


def batch(dtype, n=9, d=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randint(0, classes, (n,), generator=g)
    x[2] = 0.0                      # a zero example
    x[5], y[5] = x[1], y[1]         # a duplicate
    return x, y


def close(a, b, dtype):
    return torch.allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype] * 1e-3)


# ---------------------------------------------------------------------------------------------- layer_sq_norms

def test_layer_sq_norms_known_values():
    h, zbar = torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 2.0, 2.0]])
    assert layer_sq_norms(h, zbar, bias=False).item() == 225.0          # 9 * 25
    assert layer_sq_norms(h, zbar).item() == 9.0 * 26.0                 # bias: ||h||^2 + 1
    assert layer_sq_norms(h, zbar, weight=False).item() == 9.0          # bias only


def test_layer_sq_norms_is_the_frobenius_norm_of_the_outer_product():
    g = torch.Generator().manual_seed(1)
    h, zbar = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    outer = torch.einsum("bp,bd->bpd", zbar, h)
    assert torch.allclose(layer_sq_norms(h, zbar, bias=False), outer.pow(2).sum((1, 2)), rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 4), t=st.integers(1, 6), d=st.integers(1, 5), p=st.integers(1, 5),
       bias=st.booleans(), weight=st.booleans(), seed=st.integers(0, 1000))
def test_gram_and_outer_forms_agree(b, t, d, p, bias, weight, seed):
    if not (bias or weight):
        weight = True
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, t, d, generator=g, dtype=torch.float64)
    zbar = torch.randn(b, t, p, generator=g, dtype=torch.float64)
    gram = layer_sq_norms(h, zbar, weight=weight, bias=bias, method="gram")
    outer = layer_sq_norms(h, zbar, weight=weight, bias=bias, method="outer")
    auto = layer_sq_norms(h, zbar, weight=weight, bias=bias)
    # reference: materialise the gradient sum_t zbar_t [h_t, 1]^T
    h_aug = torch.cat([h * float(weight), torch.ones(b, t, 1, dtype=h.dtype) * float(bias)], dim=2)
    ref = torch.einsum("btp,btd->bpd", zbar, h_aug).pow(2).sum((1, 2))
    for value in (gram, outer, auto):
        assert torch.allclose(value, ref, rtol=1e-10, atol=1e-12)
    if t == 1:   # one position: the Gram form is eq 10
        assert torch.allclose(gram, layer_sq_norms(h[:, 0], zbar[:, 0], weight=weight, bias=bias), rtol=1e-12)


def test_per_position_eq10_is_wrong_for_shared_weights():
    g = torch.Generator().manual_seed(2)
    h, zbar = torch.randn(3, 5, 4, generator=g, dtype=torch.float64), torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    per_position = (zbar.pow(2).sum(2) * h.pow(2).sum(2)).sum(1)          # ignores the cross terms t != s
    assert not torch.allclose(per_position, layer_sq_norms(h, zbar, bias=False), rtol=1e-3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(h=[[1.0]], zbar=torch.ones(1, 1)), "h must be a torch.Tensor"),
    (dict(h=torch.ones(1, 1), zbar=None), "zbar must be a torch.Tensor"),
    (dict(h=torch.ones(3), zbar=torch.ones(3)), "h must have shape"),
    (dict(h=torch.ones(2, 3), zbar=torch.ones(3, 3)), "zbar must have shape"),
    (dict(h=torch.ones(2, 4, 3), zbar=torch.ones(2, 5, 3)), "zbar must have shape"),
    (dict(h=torch.ones(2, 3), zbar=torch.ones(2, 3), method="fast"), "method"),
    (dict(h=torch.ones(2, 3), zbar=torch.ones(2, 3), weight=False, bias=False), "weight and bias"),
])
def test_layer_sq_norms_rejects_bad_input(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        layer_sq_norms(**kwargs)


# ---------------------------------------------------------------------------------------------- whole model

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_naive_loop_and_vmap(dtype, bias):
    torch.manual_seed(0)
    model = mlp([6, 8, 5, 3], bias=bias, dtype=dtype)
    x, y = batch(dtype)
    trick = per_example_grad_norms(model, ce, x, y)
    assert trick.shape == (9,) and trick.dtype == dtype
    assert close(trick, naive_norms(model, ce, x, y), dtype)
    assert close(trick, norms_from_grads(per_example_grads(model, ce, x, y)), dtype)
    assert close(per_example_grad_norms(model, ce, x, y, per_layer=True), naive_norms(model, ce, x, y, True), dtype)


@pytest.mark.parametrize("bias", [True, False])
def test_duplicates_and_zero_examples(bias):
    torch.manual_seed(0)
    model = mlp([6, 8, 5, 3], bias=bias, dtype=torch.float64)
    x, y = batch(torch.float64)
    per_layer = per_example_grad_norms(model, ce, x, y, per_layer=True)
    assert per_layer.shape == (9, 3)
    assert torch.equal(per_layer[5], per_layer[1])                    # a duplicate has the same norms
    grads = per_example_grads(model, ce, x, y)
    assert torch.all(grads["fc1.weight"][2] == 0.0)                    # h = 0: the weight gradient zbar h^T vanishes
    first_bias = grads["fc1.bias"][2].norm() if bias else torch.tensor(0.0, dtype=torch.float64)
    assert torch.allclose(per_layer[2, 0], first_bias, rtol=1e-10, atol=1e-15)   # ... only the bias is left
    if not bias:                                                        # no bias, ReLU: a zero input has zero gradient
        assert torch.all(per_layer[2] == 0.0)
    total = per_example_grad_norms(model, ce, x, y)
    assert torch.allclose(total, per_layer.pow(2).sum(1).sqrt(), rtol=1e-12)   # eq-pex-total


def test_per_example_norms_leave_grad_untouched_and_work_under_no_grad():
    model = mlp([4, 3, 2], dtype=torch.float64)
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.zeros(5, dtype=torch.long)
    with torch.no_grad():
        norms = per_example_grad_norms(model, ce, x, y)
    assert all(p.grad is None for p in model.parameters())
    assert not norms.requires_grad and untracked(model)


def test_frozen_layers_are_excluded_and_frozen_bias_counts_only_weight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(8, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    model[0].requires_grad_(False)          # a frozen conv is fine
    model[4].bias.requires_grad_(False)     # only the weight of the last layer is trainable
    x, y = torch.randn(6, 1, 6, dtype=torch.float64), torch.randint(0, 3, (6,))
    trick = per_example_grad_norms(model, ce, x, y)
    ref = norms_from_grads(per_example_grads(model, ce, x, y))
    assert set(per_example_grads(model, ce, x, y)) == {"2.weight", "2.bias", "4.weight"}
    assert torch.allclose(trick, ref, rtol=1e-10)


class SequenceModel(nn.Module):
    """Linear layers applied at every position of a (B, T, d) input: weights shared over T."""

    def __init__(self, d=5, hidden=4, classes=3, tie=False):
        super().__init__()
        self.embed = nn.Linear(d, hidden)
        self.mix = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, classes)
        self.tie = tie

    def forward(self, x):
        z = torch.tanh(self.embed(x))
        z = torch.tanh(self.mix(z))
        if self.tie:                        # the same layer called a second time
            z = torch.tanh(self.mix(z))
        return self.head(z.mean(dim=1))


@pytest.mark.parametrize("tie", [False, True])
def test_sequence_model_gram_form_matches_vmap_float64(tie):
    torch.manual_seed(3)
    model = SequenceModel(tie=tie).double()
    x, y = torch.randn(4, 7, 5, dtype=torch.float64), torch.randint(0, 3, (4,))
    trick = per_example_grad_norms(model, ce, x, y)
    assert torch.allclose(trick, norms_from_grads(per_example_grads(model, ce, x, y)), rtol=1e-10)
    assert torch.allclose(trick, naive_norms(model, ce, x, y), rtol=1e-10)


def test_conv_via_unfold_gram_form_matches_vmap():
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 3, kernel_size=3, dtype=torch.float64)
    head = nn.Linear(3, 2, dtype=torch.float64)
    head.requires_grad_(False)
    model = nn.Sequential(conv, nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    x, y = torch.randn(5, 2, 6, 6, dtype=torch.float64), torch.randint(0, 2, (5,))
    out = conv(x)                                                       # (B, p, 4, 4)
    out.retain_grad()
    ce(nn.Sequential(*list(model)[1:])(out), y).sum().backward()
    h = F.unfold(x, kernel_size=3).transpose(1, 2)                      # (B, T, C k k)
    zbar = out.grad.flatten(2).transpose(1, 2)                          # (B, T, p)
    ref = norms_from_grads(per_example_grads(model, ce, x, y))
    for method in ("gram", "outer"):
        assert torch.allclose(layer_sq_norms(h, zbar, method=method).sqrt(), ref, rtol=1e-10)
    assert torch.allclose(per_example_grad_norms(model, ce, x, y), ref, rtol=1e-10)


class ConvNet(nn.Module):
    """Two convolutions with assorted geometry, then a linear head."""

    def __init__(self, conv1: dict, conv2: dict, bias: bool = True):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, bias=bias, **conv1)
        self.c2 = nn.Conv2d(4, 3, bias=bias, **conv2)
        self.head = nn.LazyLinear(3, bias=bias)

    def forward(self, x):
        z = torch.tanh(self.c2(torch.tanh(self.c1(x))))
        return self.head(z.flatten(1))


CONV_CASES = [
    (dict(kernel_size=3), dict(kernel_size=3, padding=1)),
    (dict(kernel_size=(3, 2), stride=2, padding=(1, 0)), dict(kernel_size=2, dilation=2)),
    (dict(kernel_size=3, padding="same", padding_mode="reflect"), dict(kernel_size=1)),
    (dict(kernel_size=4, padding="same"), dict(kernel_size=3, padding=2, padding_mode="circular")),
    (dict(kernel_size=3, stride=3), dict(kernel_size=2)),      # conv2: T = 2, the Gram form
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv2d_layers_match_vmap(case, bias, dtype):
    """eq-pex-conv: strides, dilation, string and non-zero padding, with and without bias;
    both the grouped-convolution (outer) and the Gram form, chosen by gram_is_cheaper."""
    torch.manual_seed(case)
    model = ConvNet(*CONV_CASES[case], bias=bias)
    x = torch.randn(6, 2, 9, 8)
    model(x)                                    # materialise the lazy head
    model = model.to(dtype)
    x, y = x.to(dtype), torch.randint(0, 3, (6,))
    ref = norms_from_grads(per_example_grads(model, ce, x, y))
    ours = per_example_grad_norms(model, ce, x, y)
    assert close(ours, ref, dtype)
    per_layer = per_example_grad_norms(model, ce, x, y, per_layer=True)
    assert per_layer.shape == (6, 3)
    assert close(per_layer, naive_norms(model, ce, x, y, per_layer=True), dtype)


def test_conv2d_tracked_in_an_ordinary_mean_step_both_forms():
    """digits_convnet through track_norms (mean loss); "outer" and "gram" agree with vmap."""
    from utils.pruning import digits_convnet
    model = digits_convnet(seed=1).double()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 64, generator=g, dtype=torch.float64), torch.randint(0, 10, (7,), generator=g)
    with track_norms(model, reduction="mean") as tracker:
        F.cross_entropy(model(x), y).backward()
    ref = norms_from_grads(per_example_grads(model, ce, x, y))
    assert torch.allclose(tracker.norms(), ref, rtol=1e-10)
    for c in tracker.captured():
        if c.h.ndim == 3:
            gram = layer_sq_norms(c.h, c.zbar, weight=c.weight, bias=c.bias, method="gram")
            outer = layer_sq_norms(c.h, c.zbar, weight=c.weight, bias=c.bias, method="outer")
            assert torch.allclose(gram, outer, rtol=1e-10)


def test_grouped_conv_is_rejected_by_name():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match="'0' has groups=2"):
        per_example_grad_norms(model, ce, torch.randn(3, 4, 5, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="Conv2d"):
        trainable_linear_layers(nn.Sequential(nn.Conv2d(1, 1, 1)))   # the Linear-only list


def test_gram_is_cheaper_is_the_flop_rule():
    assert gram_is_cheaper(32, 64, 64) and not gram_is_cheaper(33, 64, 64)
    assert gram_is_cheaper(57, 576, 64) and not gram_is_cheaper(58, 576, 64)   # T* = 57.6
    for bad in (dict(t=0, d=1, p=1), dict(t=1, d=1.5, p=1), dict(t=1, d=1, p=True)):
        with pytest.raises(ValueError, match="must be an int >= 1"):
            gram_is_cheaper(**bad)


@settings(max_examples=25, deadline=None)
@given(t=st.integers(1, 40), d=st.integers(1, 40), p=st.integers(1, 40))
def test_gram_is_cheaper_picks_the_smaller_flop_count(t, d, p):
    gram_flops, outer_flops = t * t * (d + p), t * d * p
    assert gram_is_cheaper(t, d, p) == (gram_flops <= outer_flops)


def test_rejects_scalar_loss_and_wrong_shapes():
    model = mlp([4, 3, 2])
    x, y = torch.randn(5, 4), torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match="loss_fn returned a scalar"):
        per_example_grad_norms(model, F.cross_entropy, x, y)
    with pytest.raises(ValueError, match="loss_fn returned a scalar"):
        per_example_grads(model, F.cross_entropy, x, y)
    with pytest.raises(ValueError, match="loss_fn must return"):
        per_example_grad_norms(model, lambda o, t: ce(o, t)[:3], x, y)
    with pytest.raises(TypeError, match="loss_fn"):
        per_example_grad_norms(model, "ce", x, y)
    with pytest.raises(TypeError, match="x must be"):
        per_example_grad_norms(model, ce, x.numpy(), y)
    with pytest.raises(ValueError, match="y must hold"):
        per_example_grad_norms(model, ce, x, y[:4])
    with pytest.raises(TypeError, match="per_layer"):
        per_example_grad_norms(model, ce, x, y, per_layer="yes")
    with pytest.raises(TypeError, match="model"):
        per_example_grad_norms(lambda v: v, ce, x, y)


@pytest.mark.parametrize("layer, name", [(nn.BatchNorm1d(3), "BatchNorm1d"), (nn.LayerNorm(3), "LayerNorm")])
def test_rejects_unsupported_trainable_layers_by_name(layer, name):
    model = nn.Sequential(nn.Linear(4, 3), layer, nn.Linear(3, 2))
    with pytest.raises(ValueError, match=f"'1' \\({name}\\)"):
        per_example_grad_norms(model, ce, torch.randn(5, 4), torch.zeros(5, dtype=torch.long))


def test_rejects_models_without_trainable_linear_layer():
    model = mlp([4, 2]).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        trainable_linear_layers(model)


def test_unused_layer_raises():
    model = nn.ModuleDict({"a": nn.Linear(4, 2), "unused": nn.Linear(4, 2)})
    model.forward = lambda v: model["a"](v)
    with pytest.raises(RuntimeError, match="'unused'"):
        per_example_grad_norms(model, ce, torch.randn(3, 4), torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------------------------- track_norms

@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_track_norms_in_an_ordinary_step(reduction):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(inplace=True), nn.Linear(8, 3)).double()
    x, y = batch(torch.float64)
    with track_norms(model, reduction=reduction) as tracker:
        with torch.no_grad():
            model(x[:2])                                    # evaluation inside the block is ignored
        loss = F.cross_entropy(model(x), y, reduction=reduction)
        loss.backward()
    assert untracked(model)                                 # recorders removed on exit
    ordinary = model[0].weight.grad.clone()
    assert tracker.layer_names == ["0", "2"]
    assert torch.allclose(tracker.norms(), per_example_grad_norms(model, ce, x, y), rtol=1e-10)
    assert tracker.norms(per_layer=True).shape == (9, 2)
    scale = 1.0 if reduction == "sum" else 1.0 / len(x)
    ref = scale * per_example_grads(model, ce, x, y)["0.weight"].sum(dim=0)
    assert torch.allclose(ordinary, ref, rtol=1e-10)            # the ordinary gradient is still the batch gradient


def test_track_norms_errors():
    model = mlp([4, 3, 2])
    with pytest.raises(ValueError, match="reduction"):
        with track_norms(model, reduction="max"):
            pass
    x, y = torch.randn(5, 4), torch.zeros(5, dtype=torch.long)
    with track_norms(model) as tracker:
        loss = ce(model(x), y).sum()
        with pytest.raises(RuntimeError, match="backward"):
            tracker.norms()
    with track_norms(model) as tracker:
        pass
    with pytest.raises(RuntimeError, match="not called"):
        tracker.norms()
    with pytest.raises(TypeError, match="model"):
        with track_norms("model"):
            pass


def test_track_norms_reset_reuses_tracker():
    model = mlp([4, 3, 2], dtype=torch.float64)
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.zeros(5, dtype=torch.long)
    with track_norms(model) as tracker:
        ce(model(x), y).sum().backward()
        tracker.reset()
        ce(model(x[:3]), y[:3]).sum().backward()
        assert tracker.norms().shape == (3,)


def test_tracker_keeps_the_fast_call_path_and_restores_forward():
    model = mlp([4, 3, 2], dtype=torch.float64)
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.zeros(5, dtype=torch.long)
    with track_norms(model) as tracker:
        assert tracker.attached and "forward" in vars(model.fc1)
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
        ce(model(x), y).sum().backward()
    assert not tracker.attached and untracked(model)
    assert torch.allclose(tracker.norms(), naive_norms(model, ce, x, y), rtol=1e-10)
    with track_norms(model) as tracker:                 # keyword input, as nn.Linear names it
        ce(model.fc2(torch.relu(model.fc1(input=x))), y).sum().backward()
    assert torch.allclose(tracker.norms(), naive_norms(model, ce, x, y), rtol=1e-10)


def test_tracker_chains_with_other_forward_wrappers():
    model = mlp([4, 3, 2], dtype=torch.float64)
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.zeros(5, dtype=torch.long)
    calls = []
    plain = model.fc1.forward

    def counted(h):                                     # someone's wrapper set before the tracker
        calls.append("before")
        return plain(h)

    model.fc1.forward = counted
    with track_norms(model) as tracker:
        ce(model(x), y).sum().backward()
    assert calls == ["before"] and vars(model.fc1)["forward"] is counted   # put back, not removed
    assert torch.allclose(tracker.norms(), naive_norms(model, ce, x, y), rtol=1e-10)
    del model.fc1.forward
    tracker = NormTracker(model).attach()
    recorder = model.fc1.forward

    def on_top(h):                                      # a wrapper set while the tracker is on
        calls.append("after")
        return recorder(h)

    model.fc1.forward = on_top
    tracker.detach()
    assert vars(model.fc1)["forward"] is on_top         # left in place, the recorder inert
    tracker.reset()
    out = model(x)
    assert calls[-1] == "after" and torch.allclose(out, model.fc2(torch.relu(plain(x))))
    with pytest.raises(RuntimeError, match="not called"):
        tracker.norms()


def test_deep_copy_of_a_tracked_model_is_a_plain_model():
    import copy

    model = mlp([4, 3, 2], dtype=torch.float64)
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.zeros(5, dtype=torch.long)
    with track_norms(model) as tracker:
        twin = copy.deepcopy(model)
        twin.fc1.weight.data.mul_(2.0)                  # the copy owns its weights ...
        ce(twin(x), y).sum().backward()                 # ... and does not feed the tracker
        with pytest.raises(RuntimeError, match="not called"):
            tracker.norms()
        ce(model(x), y).sum().backward()
    assert untracked(model)
    for layer in (twin.fc1, twin.fc2):                  # the plain forward, bound to the copy
        assert layer.forward.__self__ is layer and layer.forward.__func__ is nn.Linear.forward
    assert torch.allclose(twin(x), model.fc2(torch.relu(F.linear(x, 2 * model.fc1.weight,
                                                                 model.fc1.bias))))
    assert torch.allclose(tracker.norms(), naive_norms(model, ce, x, y), rtol=1e-10)


# ---------------------------------------------------------------------------------------------- references, plot

def test_per_example_grads_shapes_and_norms_from_grads():
    model = mlp([4, 3, 2])
    grads = per_example_grads(model, ce, torch.randn(5, 4), torch.zeros(5, dtype=torch.long))
    assert {k: tuple(v.shape) for k, v in grads.items()} == {
        "fc1.weight": (5, 3, 4), "fc1.bias": (5, 3), "fc2.weight": (5, 2, 3), "fc2.bias": (5, 2)}
    assert torch.equal(norms_from_grads({"w": torch.tensor([[3.0, 0.0]]), "b": torch.tensor([[4.0]])}),
                       torch.tensor([5.0]))
    with pytest.raises(ValueError, match="grads"):
        norms_from_grads({})
    with pytest.raises(ValueError, match="batch size"):
        norms_from_grads({"a": torch.ones(2, 3), "b": torch.ones(3, 3)})


def test_plot_norm_snapshot_draws_and_validates():
    rng = np.random.default_rng(0)
    snaps = {0: rng.random(20) + 0.1, 10: rng.random(20) + 0.1}
    images, labels, flipped = rng.random((20, 64)), rng.integers(0, 10, 20), rng.random(20) < 0.2
    fig = plt.figure(figsize=(6, 3))
    plot_norm_snapshot(fig, 7, snaps, images, labels, k=4, flipped=flipped)
    assert "step 10" in [a.get_title() for a in fig.get_axes()][0]
    plt.close(fig)
    with pytest.raises(ValueError, match="k must be"):
        plot_norm_snapshot(plt.figure(), 0, snaps, images, labels, k=0)
    with pytest.raises(ValueError, match="snapshots"):
        plot_norm_snapshot(plt.figure(), 0, {}, images, labels)
    plt.close("all")


def test_track_norms_rejects_two_batches_of_different_sizes():
    model = mlp([4, 3, 2], dtype=torch.float64)
    with track_norms(model) as tracker:
        loss = ce(model(torch.randn(5, 4, dtype=torch.float64)), torch.zeros(5, dtype=torch.long)).sum()
        loss = loss + ce(model(torch.randn(3, 4, dtype=torch.float64)), torch.zeros(3, dtype=torch.long)).sum()
        loss.backward()
    with pytest.raises(ValueError, match="batches of different sizes"):
        tracker.norms()


def test_track_norms_two_forward_passes_of_one_batch_share_weights():
    """Two calls on the same batch (e.g. a consistency loss) are weight sharing: the Gram form handles it."""
    torch.manual_seed(5)
    model = mlp([4, 3, 2], activation="tanh", dtype=torch.float64)
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 2, (6,))

    def loss_fn(out, t):
        return ce(out, t)

    class Twice(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, v):
            return self.inner(v) + self.inner(2.0 * v)

    twice = Twice(model)
    with track_norms(twice) as tracker:
        loss_fn(twice(x), y).sum().backward()
    ref = norms_from_grads(per_example_grads(twice, loss_fn, x, y))
    assert torch.allclose(tracker.norms(), ref, rtol=1e-10)


# ---------------------------------------------------------------------------------------------- persistent tracker

@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_persistent_tracker_over_several_steps(reduction):
    """One tracker attached once: every step's norms are that step's, not a mix with the last."""
    torch.manual_seed(0)
    model = mlp([6, 8, 5, 3], dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    tracker = NormTracker(model, reduction).attach()
    g = torch.Generator().manual_seed(1)
    for size in (9, 4, 7):
        x = torch.randn(size, 6, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (size,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y, reduction=reduction).backward()
        norms = tracker.norms()
        tracker.detach()
        assert torch.allclose(norms, naive_norms(model, ce, x, y), rtol=1e-10)
        tracker.attach()
        opt.step()
    assert torch.allclose(tracker.norms(), norms)            # a second read: same step
    tracker.detach()
    assert untracked(model)
    with NormTracker(model) as t2:                           # the with-statement form
        ce(model(x), y).sum().backward()
    assert torch.allclose(t2.norms(), naive_norms(model, ce, x, y), rtol=1e-10)


def test_captured_gives_the_per_example_gradients_in_sum_convention():
    """sum_t zbar_t [h_t, 1]^T is each example's gradient, for a mean-reduced step too."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(32, 3)).double()
    x, y = torch.randn(5, 1, 4, 4, dtype=torch.float64), torch.randint(0, 3, (5,))
    with track_norms(model, reduction="mean") as tracker:
        F.cross_entropy(model(x), y).backward()
    grads = per_example_grads(model, ce, x, y)
    captured = {c.name: c for c in tracker.captured()}
    conv, lin = captured["0"], captured["3"]
    assert conv.h.shape == (5, 16, 9) and conv.zbar.shape == (5, 16, 2)
    w = torch.einsum("btp,btd->bpd", conv.zbar, conv.h).reshape(5, 2, 1, 3, 3)
    assert torch.allclose(w, grads["0.weight"], rtol=1e-10, atol=1e-14)
    assert torch.allclose(conv.zbar.sum(1), grads["0.bias"], rtol=1e-10, atol=1e-14)
    assert torch.allclose(torch.einsum("bp,bd->bpd", lin.zbar, lin.h), grads["3.weight"],
                          rtol=1e-10, atol=1e-14)
    assert conv.weight and conv.bias


# ---------------------------------------------------------------------------------------------- ranking

def test_top_k_precision_known_values_ties_and_errors():
    flagged = np.array([False, True, False, True, True])
    assert top_k_precision([5, 4, 3, 2, 1], flagged, 2) == 0.5
    assert top_k_precision(torch.tensor([1.0, 9.0, 0.0, 8.0, 7.0]), torch.tensor(flagged), 3) == 1.0
    assert top_k_precision([1, 1, 1, 1, 1], flagged, 1) == 0.0     # ties: first position wins
    assert top_k_precision([1, 2, 3, 4, 5], flagged, 5) == flagged.mean()
    for bad_k in (0, 6, 2.0, True):
        with pytest.raises(ValueError, match="k must be"):
            top_k_precision([1, 2, 3, 4, 5], flagged, bad_k)
    with pytest.raises(ValueError, match="flagged"):
        top_k_precision([1, 2, 3], [0, 1, 0], 1)
    with pytest.raises(ValueError, match="NaN"):
        top_k_precision([1.0, float("nan")], np.array([True, False]), 1)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 30), seed=st.integers(0, 10_000))
def test_top_k_precision_is_invariant_to_monotone_maps(n, seed):
    rng = np.random.default_rng(seed)
    scores, flagged = rng.random(n), rng.random(n) < 0.3
    k = int(rng.integers(1, n + 1))
    base = top_k_precision(scores, flagged, k)
    assert top_k_precision(np.exp(3 * scores) + 1, flagged, k) == base
    assert top_k_precision(-scores, flagged, n) == flagged.mean()


def test_rank_by_norm_and_loss():
    flagged = np.array([True, False, False, True])
    out = rank_by_norm_and_loss([4.0, 1.0, 2.0, 3.0], [0.1, 0.2, 0.3, 0.4], flagged, k=2)
    assert out["norm"] == 1.0 and out["loss"] == 0.5
    assert -1.0 <= out["corr_log"] <= 1.0
    same = rank_by_norm_and_loss([1.0, 2.0, 4.0], [3.0, 6.0, 12.0], np.array([0, 0, 1], bool), 1)
    assert same == {"norm": 1.0, "loss": 1.0, "corr_log": 1.0}     # log-linear: corr exactly 1
    with pytest.raises(ValueError, match="> 0"):
        rank_by_norm_and_loss([0.0, 1.0], [1.0, 1.0], np.array([True, False]), 1)
    with pytest.raises(ValueError, match="same length"):
        rank_by_norm_and_loss([1.0, 2.0], [1.0], np.array([True, False]), 1)


def test_bench_table_from_a_results_record():
    from utils.per_example import bench_table

    def row(model, batch, threads, trick):
        ratio = {"standard": 1.0, "trick": trick, "vmap": 40.0}
        return {"model": model, "batch": batch, "threads": threads, "ratio": ratio,
                "cpu_ratio": {k: v * 0.5 for k, v in ratio.items()},
                "median_s": {"standard": 0.002, "trick": 0.002 * trick, "vmap": 0.08},
                "median_cpu_s": {"standard": 0.001, "trick": 0.001 * trick, "vmap": 0.04},
                "max_rel_diff_vs_vmap": {"trick": 3e-7, "vmap_vs_float64_loop": 2e-6},
                "memory_MiB": {"standard": 0.5, "trick": 1.0, "vmap": 700.0}}
    data = {"rows": [row("small", 64, 1, 1.2), row("large", 256, 1, 1.05),
                     row("small", 64, 2, 1.3)]}
    table = bench_table(data, threads=1, timer="wall")
    lines = table.splitlines()
    assert lines[0].split() == ["S64", "L256"]
    assert lines[1].split()[-2:] == ["1.20x", "1.05x"]                  # trick, wall clock
    assert "0.60x" in bench_table(data, threads=1, timer="cpu")         # CPU-time ratios
    assert any(line.startswith("standard step, ms") and line.split()[-2:] == ["2.00", "2.00"]
               for line in lines)
    assert any(line.startswith("max rel. diff") and "2e-06" in line for line in lines)
    assert any(line.startswith("+MiB torch.func vmap") and line.split()[-1] == "700"
               for line in lines)
    assert all(len(line) <= 80 for line in lines)
    assert "1.30x" in bench_table(data, threads=2, timer="wall")
    with pytest.raises(ValueError, match="threads"):
        bench_table(data, threads=4)
    with pytest.raises(ValueError, match="timer"):
        bench_table(data, timer="gpu")


def test_committed_benchmark_results_are_consistent():
    """The file the chapter prints: every method was checked against vmap before it was timed."""
    from utils.per_example import bench_table
    from utils.results import load_results
    record = load_results("per_example_bench")
    data = record["data"]
    assert data["rows"] and all(r["model"] in ("small", "large", "conv") for r in data["rows"])
    for r in data["rows"]:
        assert max(r["max_rel_diff_vs_vmap"].values()) <= data["tolerance_vs_vmap"] <= 1e-5
        runs = r["runs"]
        for key in ("ratio", "cpu_ratio"):           # the medians over the runs, each run's kept
            assert runs[key]["standard"] == [1.0] * len(runs["seeds"]) and r[key]["standard"] == 1
            for m, per_run in runs[key].items():
                assert len(per_run) == len(runs["seeds"]) and min(per_run) > 0
                assert r[key][m] == pytest.approx(float(np.median(per_run)), rel=1e-12)
        assert all(t > 0 for t in r["median_s"].values())
    for threads in sorted({r["threads"] for r in data["rows"]}):
        lines = bench_table(data, threads=threads).splitlines()
        assert all(len(line) <= 79 for line in lines)
        assert len({len(line) for line in lines}) == 1  # the columns line up
