"""Tests of utils.masking: the three masking modes against notes eq 3, masks, hooks, the sweep."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.data import load_digits_tensors
from utils.masking import (MODES, MaskedLinear, apply_masks_, check_mask, check_masks, count_weights, density_sweep,
                           explorer_run, gradient_only_mask, layer_masks, magnitude_mask, masked_bias_grad,
                           masked_weight_grad, masking_hooks, mean_accuracy, plot_accuracy_vs_density,
                           plot_masking_explorer, random_mask, sparsified, straight_through, summarize_sweep,
                           sweep_table, sweep_differences, differences_table, wrap_masked, train_masked, training_curves,
                           plot_training_curves)
from utils.models import linear_layers, mlp
from utils.training import train

F64 = torch.float64


def _layer_and_batch(mode, seed=0, b=5, n_in=4, n_out=3, density=0.5):
    g = torch.Generator().manual_seed(seed)
    layer = MaskedLinear(n_in, n_out, mode=mode, dtype=F64)
    layer.set_mask(random_mask((n_out, n_in), density, g, dtype=F64))
    h = torch.randn(b, n_in, generator=g, dtype=F64)
    target = torch.randn(b, n_out, generator=g, dtype=F64)
    return layer, h, target


def _grads_and_delta(layer, h, target):
    z = layer(h)
    z.retain_grad()
    loss = 0.5 * ((torch.tanh(z) - target) ** 2).sum()
    loss.backward()
    return layer.weight.grad, layer.bias.grad, z.grad


# ---------------------------------------------------------------- known values and identities

def test_masked_weight_grad_known_value():
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    delta = torch.tensor([[1.0, 2.0]])
    h = torch.tensor([[3.0, 4.0]])
    # eq 2 entry by entry: M_ij delta_i h_j
    assert masked_weight_grad(mask, delta, h).tolist() == [[3.0, 0.0], [6.0, 8.0]]


def test_masked_weight_grad_is_sum_of_per_example_outer_products():
    g = torch.Generator().manual_seed(1)
    mask = random_mask((3, 4), 0.5, g, dtype=F64)
    delta, h = torch.randn(6, 3, generator=g, dtype=F64), torch.randn(6, 4, generator=g, dtype=F64)
    outer = sum(mask * torch.outer(delta[n], h[n]) for n in range(6))
    torch.testing.assert_close(masked_weight_grad(mask, delta, h), outer, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_autograd_matches_eq3_in_every_mode(mode):
    layer, h, target = _layer_and_batch(mode)
    w_grad, b_grad, delta = _grads_and_delta(layer, h, target)
    mask = layer.mask if mode in ("weight", "gradient") else torch.ones_like(layer.mask)
    torch.testing.assert_close(w_grad, masked_weight_grad(mask, delta, h), rtol=0, atol=1e-12)
    torch.testing.assert_close(b_grad, masked_bias_grad(delta), rtol=0, atol=1e-12)


def test_weight_mode_gradient_is_exactly_zero_off_the_mask_and_forward_only_is_not():
    layer, h, target = _layer_and_batch("weight")
    w_grad, _, _ = _grads_and_delta(layer, h, target)
    assert (w_grad[layer.mask == 0] == 0).all()
    layer.weight.grad = None
    layer.set_mode("forward_only")
    w_grad, _, _ = _grads_and_delta(layer, h, target)
    assert (w_grad[layer.mask == 0] != 0).any()


@pytest.mark.parametrize("mode, dense_forward", [("weight", False), ("gradient", True), ("forward_only", False)])
def test_forward_value_of_each_mode(mode, dense_forward):
    layer, h, _ = _layer_and_batch(mode)
    w = layer.weight if dense_forward else layer.mask * layer.weight
    torch.testing.assert_close(layer(h), h @ w.T + layer.bias, rtol=0, atol=1e-12)


def test_straight_through_value_and_identity_jacobian():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(3, 4, generator=g, dtype=F64)
    m = random_mask((3, 4), 0.5, g, dtype=F64)
    assert torch.equal(straight_through(w, m), m * w)
    jac = torch.autograd.functional.jacobian(lambda x: straight_through(x, m), w)
    torch.testing.assert_close(jac.reshape(12, 12), torch.eye(12, dtype=F64), rtol=0, atol=0)
    jac_g = torch.autograd.functional.jacobian(lambda x: gradient_only_mask(x, m), w)
    torch.testing.assert_close(jac_g.reshape(12, 12), torch.diag(m.flatten()), rtol=0, atol=0)
    assert torch.equal(gradient_only_mask(w, m), w)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 6), n_in=st.integers(1, 6), n_out=st.integers(1, 6),
       density=st.floats(0.05, 1.0), seed=st.integers(0, 2**16), mode=st.sampled_from(MODES))
def test_property_autograd_equals_eq3(b, n_in, n_out, density, seed, mode):
    layer, h, target = _layer_and_batch(mode, seed=seed, b=b, n_in=n_in, n_out=n_out, density=density)
    w_grad, _, delta = _grads_and_delta(layer, h, target)
    mask = torch.ones_like(layer.mask) if mode == "forward_only" else layer.mask
    torch.testing.assert_close(w_grad, masked_weight_grad(mask, delta, h), rtol=0, atol=1e-10)


def test_forward_only_trains_the_same_effective_network_as_weight_masking():
    data = load_digits_tensors(seed=0, dtype=F64)
    torch.manual_seed(0)
    base = mlp([64, 16, 10], dtype=F64)
    masks = layer_masks(base, 0.3, kind="random", seed=0)
    nets = {m: wrap_masked(copy.deepcopy(base), masks, mode=m) for m in ("weight", "forward_only")}
    for net in nets.values():
        train(net, data, steps=30, lr=0.05, seed=0, progress=False)
    for (_, a), (_, b) in zip(linear_layers(nets["weight"]), linear_layers(nets["forward_only"])):
        torch.testing.assert_close(a.effective_weight(), b.effective_weight(), rtol=0, atol=1e-12)
        assert not torch.equal(a.weight, b.weight)  # the hidden weights differ


def test_gradient_mode_freezes_pruned_weights_at_their_initial_values():
    data = load_digits_tensors(seed=0)
    torch.manual_seed(0)
    net = mlp([64, 16, 10])
    masks = layer_masks(net, 0.2, kind="random", seed=1)
    wrap_masked(net, masks, mode="gradient")
    before = {n: l.weight.detach().clone() for n, l in linear_layers(net)}
    train(net, data, steps=20, seed=0, progress=False)
    for name, layer in linear_layers(net):
        off = masks[f"{name}.weight"] == 0
        assert torch.equal(layer.weight[off], before[name][off])
        assert not torch.equal(layer.weight[~off], before[name][~off])


@pytest.mark.parametrize("scheme", ["weight", "gradient"])
def test_hooks_agree_with_masked_linear(scheme):
    data = load_digits_tensors(seed=0, dtype=F64)
    torch.manual_seed(3)
    base = mlp([64, 12, 10], dtype=F64)
    masks = layer_masks(base, 0.25, kind="random", seed=4)
    plain = copy.deepcopy(base)
    if scheme == "weight":
        with torch.no_grad():
            for name, layer in linear_layers(plain):
                layer.weight.mul_(masks[f"{name}.weight"])
    after_backward, after_step = masking_hooks(masks, scheme)
    train(plain, data, steps=25, seed=0, after_backward=after_backward, after_step=after_step, progress=False)
    masked = wrap_masked(copy.deepcopy(base), masks, mode=scheme)
    train(masked, data, steps=25, seed=0, progress=False)
    for (_, a), (_, b) in zip(linear_layers(plain), linear_layers(masked)):
        torch.testing.assert_close(a.weight, b.effective_weight(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- masks, wrap_masked, apply_masks_, helpers

def test_random_and_magnitude_masks_have_the_requested_density():
    g = torch.Generator().manual_seed(0)
    assert int(random_mask((8, 16), 0.25, g).sum()) == 32
    assert int(random_mask((8, 16), 1e-6, g).sum()) == 1          # never an empty layer
    w = torch.arange(12.0).reshape(3, 4) - 6
    m = magnitude_mask(w, 0.25)
    assert int(m.sum()) == 3 and sorted(w[m == 1].abs().tolist()) == [5.0, 5.0, 6.0]


def test_wrap_masked_on_an_mlp():
    torch.manual_seed(0)
    net = mlp([6, 5, 4, 3])
    masks = layer_masks(net, 0.5, kind="magnitude")
    x = torch.randn(7, 6)
    expected = x
    for name, layer in linear_layers(net):
        expected = torch.nn.functional.linear(expected, layer.weight * masks[f"{name}.weight"], layer.bias)
        if name != "fc3":
            expected = torch.relu(expected)
    wrap_masked(net, masks, mode="weight")
    assert [type(l).__name__ for _, l in linear_layers(net)] == ["MaskedLinear"] * 3
    torch.testing.assert_close(net(x), expected)
    wrap_masked(net, {"fc2.weight": torch.ones(4, 5)}, mode="gradient")  # already masked: mask and mode updated
    assert net.fc2.mode == "gradient" and float(net.fc2.mask.mean()) == 1.0 and net.fc1.mode == "weight"


def test_wrap_masked_takes_the_masks_that_pruning_returns():
    from utils.pruning import prune

    torch.manual_seed(0)
    net = mlp([6, 5, 4, 3], bias=False)
    masks = prune(net, "magnitude", compression=4.0)          # keyed "fc1.weight", ...
    wrap_masked(net, masks, mode="weight")
    for name, layer in linear_layers(net):
        assert torch.equal(layer.mask, masks[f"{name}.weight"].to(layer.mask.dtype))
    with pytest.raises(ValueError, match="fc9"):
        wrap_masked(net, {"fc9.weight": torch.ones(5, 6)})


def test_count_weights_and_sparsified():
    torch.manual_seed(0)
    net = mlp([64, 128, 128, 10])
    full = count_weights(net)
    assert full == {"weights": 25856, "biases": 266, "total": 26122}
    masks = layer_masks(net, 0.05, kind="random", seed=0)
    sparse = sparsified(net, masks)
    assert count_weights(sparse)["weights"] == 410 + 819 + 64
    assert count_weights(net)["weights"] == 25856  # the original is untouched


def test_sweep_records_and_summary():
    data = load_digits_tensors(seed=0)
    records = density_sweep(data, sizes=[64, 8, 10], densities=[1.0, 0.5], seeds=[0, 1], steps=5,
                            kinds=("random",), progress=False)
    assert len(records) == 2 * (3 + 3)
    summary = summarize_sweep(records)
    assert set(summary) == {("random", "weight"), ("random", "weight_rescaled"), ("random", "gradient")}
    assert summary[("random", "gradient")]["density"].tolist() == [1.0, 0.5]
    assert summary[("random", "gradient")]["n"].tolist() == [2, 2]
    for r in records:
        if r["scheme"] != "gradient":
            assert r["sparse_test_accuracy"] == r["test_accuracy"]
    expected = (records[0]["test_accuracy"] + records[6]["test_accuracy"]) / 2   # density 1, seeds 0 and 1
    assert mean_accuracy(records, "random", "weight", 1.0) == pytest.approx(expected)
    table = sweep_table(records, "random")
    assert table.splitlines()[0] == "random mask: test accuracy (%), mean min-max over 2 seeds"
    assert len(table.splitlines()) == 2 + 2
    with pytest.raises(ValueError, match="no records"):
        mean_accuracy(records, "magnitude", "weight", 1.0)


def test_plotting_functions_draw():
    import matplotlib.pyplot as plt

    fig = plt.figure()
    plot_masking_explorer(fig, density=0.3, scheme="forward_only", steps=3)
    assert len(fig.axes) == 6   # five panels and one colour bar
    # one colour scale for every weight-valued panel, the same for every setting
    limits = {fig.axes[i].images[0].get_clim() for i in (0, 2, 3, 4)}
    assert limits == {(-1.0, 1.0)}
    run = explorer_run(density=0.3, scheme="weight", steps=5)
    assert (run["grad0"][run["M"] == 0] == 0).all() and run["loss"][-1] < run["loss"][0]
    records = [dict(seed=s, kind="random", scheme=sc, density=d, test_accuracy=0.5, sparse_test_accuracy=0.4,
                    weights=1) for s in (0, 1) for sc in ("weight", "gradient") for d in (1.0, 0.1)]
    fig, ax = plt.subplots()
    plot_accuracy_vs_density(ax, records)
    assert ax.get_xscale() == "log"


# ---------------------------------------------------------------- invalid input

def test_invalid_masks_raise():
    layer = MaskedLinear(3, 2)
    with pytest.raises(ValueError, match="mask must have shape"):
        layer.set_mask(torch.ones(3, 2))
    with pytest.raises(ValueError, match="mask must be binary"):
        layer.set_mask(torch.full((2, 3), 0.5))
    with pytest.raises(TypeError, match="mask must be a torch.Tensor"):
        check_mask([[1, 0]], (1, 2))
    with pytest.raises(ValueError, match="mode must be one of"):
        MaskedLinear(3, 2, mode="both")


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="delta and h"):
        masked_weight_grad(torch.ones(2, 3), torch.ones(4, 2), torch.ones(5, 3))
    with pytest.raises(ValueError, match="mask must have shape"):
        masked_weight_grad(torch.ones(3, 3), torch.ones(4, 2), torch.ones(4, 3))
    with pytest.raises(ValueError, match="delta must be 2-D"):
        masked_bias_grad(torch.ones(3))
    for bad in (0.0, 1.5, -0.1, True):
        with pytest.raises(ValueError, match="density"):
            random_mask((2, 2), bad)
    with pytest.raises(ValueError, match="density"):
        magnitude_mask(torch.ones(2, 2), 0)
    with pytest.raises(ValueError, match="kind"):
        layer_masks(mlp([3, 2]), 0.5, kind="snip")
    with pytest.raises(ValueError, match="'fc9.weight', which is not a prunable weight"):
        wrap_masked(mlp([3, 2]), {"fc9.weight": torch.ones(2, 3)})
    with pytest.raises(ValueError, match=r"masks\['fc1.weight'\] must have shape"):
        wrap_masked(mlp([3, 2]), {"fc1.weight": torch.ones(3, 2)})
    with pytest.raises(ValueError, match="mode"):
        wrap_masked(mlp([3, 2]), {"fc1.weight": torch.ones(2, 3)}, mode="dense")
    with pytest.raises(ValueError, match="forward_only"):
        masking_hooks({}, "forward_only")
    with pytest.raises(ValueError, match="no prunable layer"):
        wrap_masked(torch.nn.ReLU(), {"fc1.weight": torch.ones(2, 3)})
    with pytest.raises(ValueError, match="schemes"):
        density_sweep(load_digits_tensors(), sizes=[64, 10], densities=[0.5], seeds=[0], schemes=("snip",))
    with pytest.raises(ValueError, match="threads"):
        density_sweep(load_digits_tensors(), sizes=[64, 10], densities=[0.5], seeds=[0], threads=0)


# ---------------------------------------------------------------- the one mask convention

def _conv_net():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3))


def test_check_masks_accepts_parameter_names_of_any_prunable_layer():
    net = _conv_net()
    masks = {"0.weight": torch.ones(2, 1, 3, 3, dtype=torch.bool), "2.weight": torch.zeros(3, 32)}
    assert check_masks(masks, net) is masks
    assert check_masks(masks) is masks                       # without a model: only the values are checked


@pytest.mark.parametrize("masks, error, match", [
    ({"fc1": torch.ones(3, 4)}, ValueError, r"key 'fc1', which is not a prunable weight.*'fc1.weight'"),
    ({"fc1.bias": torch.ones(3)}, ValueError, "key 'fc1.bias'"),
    ({"fc1.weight": torch.ones(4, 3)}, ValueError, r"masks\['fc1.weight'\] must have shape \(3, 4\)"),
    ({"fc1.weight": torch.full((3, 4), 0.5)}, ValueError, r"masks\['fc1.weight'\] must be binary"),
    ({"fc1.weight": [[1.0]]}, TypeError, r"masks\['fc1.weight'\] must be a torch.Tensor"),
    ({}, ValueError, "non-empty"),
    ([torch.ones(3, 4)], TypeError, "must be a dict"),
])
def test_check_masks_names_the_bad_key_or_shape(masks, error, match):
    with pytest.raises(error, match=match):
        check_masks(masks, mlp([4, 3, 2]))


def test_every_function_that_takes_masks_rejects_layer_names():
    net = mlp([4, 3, 2])
    bad = {"fc1": torch.ones(3, 4)}
    for call in (lambda: wrap_masked(copy.deepcopy(net), bad), lambda: apply_masks_(copy.deepcopy(net), bad),
                 lambda: sparsified(net, bad)):
        with pytest.raises(ValueError, match="key 'fc1'"):
            call()
    after_backward, _ = masking_hooks(bad, "gradient")
    with pytest.raises(ValueError, match="key 'fc1'"):       # a clear error, not a bare KeyError
        after_backward(net, 0)


def test_apply_masks_multiplies_in_place_once():
    torch.manual_seed(0)
    net = mlp([4, 3, 2])
    w = net.fc1.weight.detach().clone()
    m = torch.tensor([[1, 0, 1, 0]] * 3)
    assert apply_masks_(net, {"fc1.weight": m}) is net
    assert torch.equal(net.fc1.weight.detach(), w * m)
    assert type(net.fc1).__name__ == "Linear"                 # no wrapping: the layer is unchanged


def test_layer_masks_are_keyed_by_parameter_name():
    masks = layer_masks(mlp([6, 5, 4]), 0.5, kind="random", seed=0)
    assert list(masks) == ["fc1.weight", "fc2.weight"]
    assert [int(m.sum()) for m in masks.values()] == [15, 10]


# ---------------------------------------------------------------- the data behind the chapter's table and figure

def _known_records():
    """Two seeds; every (scheme, density) has its own accuracy so that a swapped column shows."""
    acc = {  # (scheme, density): (seed 0, seed 1) test accuracy, sparse test accuracy, weights
        ("weight", 1.0): ((0.90, 0.92), (0.90, 0.92), (1000, 1000)),
        ("weight_rescaled", 1.0): ((0.90, 0.92), (0.90, 0.92), (1000, 1000)),
        ("gradient", 1.0): ((0.90, 0.92), (0.90, 0.92), (1000, 1000)),
        ("weight", 0.1): ((0.50, 0.60), (0.50, 0.60), (100, 102)),
        ("weight_rescaled", 0.1): ((0.70, 0.72), (0.70, 0.72), (99, 99)),
        ("gradient", 0.1): ((0.80, 0.84), (0.30, 0.20), (1000, 1000)),
    }
    return [dict(seed=s, kind="random", scheme=sc, density=d, test_accuracy=a[s], sparse_test_accuracy=sp[s],
                 weights=w[s]) for (sc, d), (a, sp, w) in acc.items() for s in (0, 1)]


def test_sweep_table_exact_rows():
    assert sweep_table(_known_records(), "random").splitlines() == [
        "random mask: test accuracy (%), mean min-max over 2 seeds",
        "dens. weights |        weight      rescaled |      gradient     as sparse",
        " 1.00    1000 |  91.0  90-92   91.0  90-92  |  91.0  90-92   91.0  90-92",
        " 0.10     101 |  55.0  50-60   71.0  70-72  |  82.0  80-84   25.0  20-30",
    ]
    with pytest.raises(ValueError, match="no records"):
        sweep_table(_known_records(), "magnitude")


def test_sweep_differences_exact_values_and_table():
    diff = sweep_differences(_known_records())
    assert list(diff) == [0.1]                                 # density 1 is the reference, not a row
    assert diff[0.1]["gain"] == pytest.approx(0.82 - 0.55)      # gradient - weight
    assert diff[0.1]["rescue"] == pytest.approx(0.71 - 0.55)    # rescaled - weight
    assert diff[0.1]["cost"] == pytest.approx(0.82 - 0.25)      # as trained - as sparse
    assert diff[0.1]["sparse_gap"] == pytest.approx(0.71 - 0.25)
    assert differences_table(diff).splitlines() == [
        " density  gradient-weight  rescaled-weight cost of sparse  sparse gap",
        "    0.10             27.0             16.0           57.0        46.0",
    ]
    with pytest.raises(ValueError, match="kind='magnitude'"):
        sweep_differences(_known_records(), "magnitude")


def test_summarize_sweep_and_mean_accuracy_exact_values():
    summary = summarize_sweep(_known_records())
    w = summary[("random", "weight")]
    assert w["density"].tolist() == [1.0, 0.1] and w["n"].tolist() == [2, 2]
    assert w["mean"] == pytest.approx([0.91, 0.55])
    assert w["std"] == pytest.approx([0.02 / 2**0.5, 0.1 / 2**0.5])        # sample std (ddof = 1)
    assert w["min"] == pytest.approx([0.90, 0.50]) and w["max"] == pytest.approx([0.92, 0.60])
    sparse = summarize_sweep(_known_records(), key="sparse_test_accuracy")[("random", "gradient")]
    assert sparse["mean"] == pytest.approx([0.91, 0.25])
    assert mean_accuracy(_known_records(), "random", "gradient", 0.1) == pytest.approx(0.82)
    assert mean_accuracy(_known_records(), "random", "gradient", 0.1, "sparse_test_accuracy") == pytest.approx(0.25)


def test_accuracy_vs_density_plots_the_summary():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    plot_accuracy_vs_density(ax, _known_records(), kind="random")
    curves = {c.get_label(): list(c.lines[0].get_ydata()) for c in ax.containers}
    assert curves["weight masking"] == pytest.approx([91.0, 55.0])
    assert curves["weight masking, init rescaled by $1/\\sqrt{d}$"] == pytest.approx([91.0, 71.0])
    assert curves["gradient masking (dense at test)"] == pytest.approx([91.0, 82.0])
    assert curves["gradient masking, evaluated sparse"] == pytest.approx([91.0, 25.0])
    assert list(ax.containers[0].lines[0].get_xdata()) == [1.0, 0.1]
    # the error bars run from the smallest to the largest seed (weight masking, d = 0.1: 50-60 %)
    segments = ax.containers[0].lines[2][0].get_segments()
    assert [tuple(p[1] for p in seg) for seg in segments] == [(90.0, 92.0), (50.0, 60.0)]


def test_training_curves_shapes_and_plot():
    import matplotlib.pyplot as plt

    data = load_digits_tensors(seed=0)
    curves = training_curves(data, sizes=[64, 8, 10], density=0.5, seeds=[0, 1], steps=6,
                             eval_every=3)
    assert curves["step"] == [3, 6]
    assert set(curves) == {"step", "dense", "weight", "weight_rescaled", "gradient"}
    assert all(curves[k].shape == (2, 2) for k in curves if k != "step")
    assert all(((0 <= curves[k]) & (curves[k] <= 1)).all() for k in curves if k != "step")
    # the same run as density_sweep's: the final accuracy matches its record
    records = density_sweep(data, sizes=[64, 8, 10], densities=[0.5], seeds=[0], steps=6,
                            kinds=("random",), progress=False)
    final = {r["scheme"]: r["test_accuracy"] for r in records if r["density"] == 0.5}
    assert {s: curves[s][0, -1] for s in final} == pytest.approx(final)
    fig, ax = plt.subplots()
    plot_training_curves(ax, curves)
    assert len(ax.lines) == 4 and list(ax.lines[0].get_xdata()) == [3, 6]
    with pytest.raises(ValueError, match="kind"):
        training_curves(data, sizes=[64, 10], density=0.5, seeds=[0], kind="snip")
    with pytest.raises(ValueError, match="eval_every"):
        training_curves(data, sizes=[64, 10], density=0.5, seeds=[0], eval_every=0)
    with pytest.raises(ValueError, match="scheme"):
        train_masked(data, sizes=[64, 10], init_state={}, masks={}, scheme="snip", density=0.5,
                     steps=1, lr=0.1)
