"""Tests of utils.sparse: layer-wise weight and unit pruning, the three representations of a
pruned network (masked dense, torch.sparse, shrunk), the KS test, costs, timing helpers,
locality, and invalid input."""

import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from utils.data import Split
from utils.models import mlp
from utils.sparse import (LAYOUTS, SparseLinear, crossover, dead_units,
                          elimination_ks, evaluate_pruned, finetune_pruned, forward_flops,
                          ks_at_init, layerwise_masks, masked_copy, pairwise_distance,
                          plot_elimination_histograms, plot_forward_ratios, plot_k_explorer,
                          plot_pruning_curves, plot_training_curves, prune_layerwise,
                          prune_units_layerwise, prune_weights_layerwise, random_mask_like,
                          shrink_units, time_interleaved, to_sparse_model,
                          train_with_best_epoch, unit_norms, weight_bytes)

torch.set_num_threads(1)


def _net(sizes=(12, 10, 8, 6, 4), bias=False, seed=0, activation="relu", dtype=torch.float32):
    torch.manual_seed(seed)
    return mlp(list(sizes), bias=bias, activation=activation, dtype=dtype)


# ------------------------------------------------------------------------------- pruning rules

def test_weight_pruning_known_values():
    net = mlp([3, 2, 1], bias=False)
    with torch.no_grad():
        net.fc1.weight.copy_(torch.tensor([[0.1, -0.5, 0.3], [-0.2, 0.6, 0.05]]))
    m = prune_weights_layerwise(net, 0.5)
    assert list(m) == ["fc1.weight"]                          # last layer stays dense
    assert m["fc1.weight"].tolist() == [[0, 1, 1], [0, 1, 0]]  # 0.05, 0.1, -0.2 removed


def test_unit_pruning_known_values_uses_l2_norm_of_incoming_weights():
    net = mlp([2, 3, 1], bias=False)
    with torch.no_grad():
        # L2 norms 5, 3.16, 4.5; L1 norms 7, 4, 4.5 -> the two norms disagree on the rank
        net.fc1.weight.copy_(torch.tensor([[3.0, 4.0], [3.0, 1.0], [4.5, 0.0]]))
    assert torch.allclose(unit_norms(net.fc1.weight), torch.tensor([5.0, math.sqrt(10), 4.5]))
    m2 = prune_units_layerwise(net, 1 / 3)
    assert m2["fc1.weight"].tolist() == [[1, 1], [0, 0], [1, 1]]
    m1 = prune_units_layerwise(net, 1 / 3, p=1)
    assert m1["fc1.weight"].tolist() == [[1, 1], [0, 0], [1, 1]]
    m1b = prune_units_layerwise(net, 2 / 3, p=1)
    assert m1b["fc1.weight"].tolist() == [[1, 1], [0, 0], [0, 0]]    # L1 drops 4.5 before 7
    m2b = prune_units_layerwise(net, 2 / 3)
    assert m2b["fc1.weight"].tolist() == [[1, 1], [0, 0], [0, 0]]


@given(k=st.floats(0.0, 0.99), seed=st.integers(0, 50))
@settings(max_examples=25, deadline=None)
def test_counts_and_ordering_property(k, seed):
    net = _net(seed=seed)
    wm = prune_weights_layerwise(net, k)
    um = prune_units_layerwise(net, k)
    for name, layer in [("fc1", net.fc1), ("fc2", net.fc2), ("fc3", net.fc3)]:
        w, mw, mu = layer.weight.detach(), wm[f"{name}.weight"], um[f"{name}.weight"]
        assert int((mw == 0).sum()) == round(k * w.numel())
        removed_units = int((mu == 0).all(dim=1).sum())
        assert removed_units == round(k * w.shape[0])
        assert bool(((mu == 0).all(1) | (mu == 1).all(1)).all())          # whole rows
        if 0 < (mw == 0).sum() < w.numel():                                  # eq-wu-weight-prune
            assert w.abs()[mw == 0].max() <= w.abs()[mw == 1].min()
        if 0 < removed_units < w.shape[0]:                                   # eq-wu-unit-prune
            n = w.norm(dim=1)
            assert n[(mu == 0).all(1)].max() <= n[(mu == 1).all(1)].min()
    assert "fc4.weight" not in wm and "fc4.weight" not in um


def test_layerwise_masks_equals_single_fraction_functions():
    net = _net()
    ks = [0.0, 0.3, 0.9]
    for method, single in (("weight", prune_weights_layerwise), ("unit", prune_units_layerwise)):
        for k, many in zip(ks, layerwise_masks(net, method, ks)):
            one = single(net, k)
            assert all(torch.equal(one[n], many[n]) for n in one)
            assert all(torch.equal(one[n], prune_layerwise(net, method, k)[n]) for n in one)


def test_ties_broken_by_position():
    net = mlp([4, 2, 1], bias=False)
    with torch.no_grad():
        net.fc1.weight.fill_(1.0)
    m = prune_weights_layerwise(net, 0.25)["fc1.weight"]
    assert m.flatten().tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    u = prune_units_layerwise(net, 0.5)["fc1.weight"]
    assert u.tolist() == [[0] * 4, [1] * 4]


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.5", None, True])
def test_fraction_out_of_range_is_rejected(bad):
    net = _net()
    for fn in (prune_weights_layerwise, prune_units_layerwise):
        with pytest.raises(ValueError, match=r"fraction .*\[0, 1\)"):
            fn(net, bad)


def test_other_bad_input():
    with pytest.raises(ValueError, match="at least two linear layers"):
        prune_weights_layerwise(nn.Sequential(nn.Linear(3, 2)), 0.5)
    with pytest.raises(ValueError, match="no prunable layer"):
        prune_units_layerwise(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(ValueError, match="method"):
        prune_layerwise(_net(), "channel", 0.5)
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        prune_units_layerwise(_net(), 0.5, p=3)
    with pytest.raises(ValueError, match="fractions"):
        layerwise_masks(_net(), "weight", [])


# ------------------------------------------------------------------------------- masks

@pytest.mark.parametrize("fn", [masked_copy, shrink_units, to_sparse_model])
def test_bad_masks_are_rejected_by_the_book_validator(fn):
    net = _net()
    fn(net, prune_weights_layerwise(net, 0.5))                  # good masks pass
    with pytest.raises(ValueError, match="shape"):
        fn(net, {"fc1.weight": torch.ones(3, 3)})
    with pytest.raises(ValueError, match="not a prunable weight"):
        fn(net, {"fc1.bias": torch.ones(10)})
    with pytest.raises(ValueError, match="binary"):
        fn(net, {"fc1.weight": torch.full((10, 12), 0.5)})
    with pytest.raises(TypeError):
        fn(net, [torch.ones(10, 12)])
    with pytest.raises(TypeError):
        fn(net, {"fc1.weight": np.ones((10, 12))})
    bool_masks = {n: m.bool() for n, m in prune_units_layerwise(net, 0.5).items()}
    x = torch.randn(3, 12)
    assert torch.allclose(fn(net, bool_masks)(x), masked_copy(net, bool_masks)(x), atol=1e-5)


def test_masked_copy_leaves_model_untouched():
    net = _net()
    before = net.fc1.weight.detach().clone()
    masks = prune_weights_layerwise(net, 0.7)
    out = masked_copy(net, masks)
    assert torch.equal(net.fc1.weight, before)
    assert torch.equal(out.fc1.weight, before * masks["fc1.weight"])


# ------------------------------------------------------------------------------- representations

@pytest.mark.parametrize("bias,activation", [(False, "relu"), (True, "relu"), (True, "sigmoid"),
                                             (False, "tanh"), (False, "gelu")])
@pytest.mark.parametrize("method", ["weight", "unit"])
@pytest.mark.parametrize("k", [0.0, 0.5, 0.9])
def test_shrink_units_has_identical_outputs(bias, activation, method, k):
    net = _net(bias=bias, activation=activation, dtype=torch.float64)
    masks = prune_layerwise(net, method, k)
    x = torch.randn(9, 12, dtype=torch.float64)
    small = shrink_units(net, masks)
    assert torch.allclose(small(x), masked_copy(net, masks)(x), atol=1e-12)
    if method == "unit":
        widths = [small.fc1.out_features, small.fc2.out_features, small.fc3.out_features]
        assert widths == [10 - round(10 * k), 8 - round(8 * k), 6 - round(6 * k)]
        assert small.fc2.in_features == widths[0] and small.fc4.out_features == 4


def test_shrink_units_folds_constant_of_removed_unit_into_next_bias():
    net = mlp([2, 2, 1], activation="sigmoid", bias=False, dtype=torch.float64)
    masks = {"fc1.weight": torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)}
    small = shrink_units(net, masks)
    assert small.fc1.out_features == 1 and small.fc2.bias is not None
    assert torch.allclose(small.fc2.bias, 0.5 * net.fc2.weight[:, 1])     # sigmoid(0) = 1/2
    relu = _net(dtype=torch.float64)
    assert shrink_units(relu, prune_units_layerwise(relu, 0.5)).fc2.bias is None   # relu(0) = 0


def test_shrink_units_rejects_bad_models():
    class NotSequential(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(3, 2), nn.Linear(2, 1)
    with pytest.raises(TypeError, match="nn.Sequential"):
        shrink_units(NotSequential(), {"fc1.weight": torch.ones(2, 3)})
    bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    with pytest.raises(ValueError, match="elementwise"):
        shrink_units(bn, {"0.weight": torch.ones(4, 3)})


def test_dead_units():
    m = {"fc1.weight": torch.tensor([[0.0, 0.0], [1.0, 0.0]])}
    assert dead_units(m)["fc1.weight"].tolist() == [True, False]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("method", ["weight", "unit"])
@pytest.mark.parametrize("bias", [False, True])
def test_to_sparse_model_matches_masked_dense(layout, method, bias):
    net = _net(sizes=(30, 40, 20, 5), bias=bias)
    for k in (0.0, 0.6, 0.95):
        masks = prune_layerwise(net, method, k)
        sparse = to_sparse_model(net, masks, layout=layout)
        x = torch.randn(17, 30)
        assert torch.allclose(sparse(x), masked_copy(net, masks)(x), atol=1e-5)
        layers = [m for m in sparse.modules() if isinstance(m, SparseLinear)]
        assert len(layers) == 2 and all(m.layout == layout for m in layers)
        assert isinstance(sparse.fc3, nn.Linear)                 # the unpruned last layer
        assert layers[0].nnz == int(masks["fc1.weight"].sum())


def test_to_sparse_model_bad_input():
    net = _net()
    with pytest.raises(ValueError, match="layout"):
        to_sparse_model(net, prune_weights_layerwise(net, 0.5), layout="bsr")
    with pytest.raises(ValueError, match="shape"):
        to_sparse_model(net, {"fc1.weight": torch.ones(2, 2)})
    with pytest.raises(ValueError, match="layout"):
        SparseLinear(torch.ones(2, 2), layout="dense")


# ------------------------------------------------------------------------------- costs

def test_flops_and_bytes_known_values():
    net = mlp([4, 3, 2], bias=False)
    masks = {"fc1.weight": torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])}
    assert forward_flops(net, batch=5) == 2 * 5 * (12 + 6)                    # eq-wu-flops
    assert forward_flops(to_sparse_model(net, masks, "csr"), batch=5) == 2 * 5 * (2 + 6)
    assert forward_flops(shrink_units(net, masks), batch=5) == 2 * 5 * (8 + 4)
    assert weight_bytes(net) == 4 * 18
    assert weight_bytes(to_sparse_model(net, masks, "coo")) == 2 * (4 + 16) + 4 * 6
    assert weight_bytes(to_sparse_model(net, masks, "csr")) == 2 * (4 + 8) + 8 * 4 + 4 * 6
    with pytest.raises(ValueError, match="batch"):
        forward_flops(net, batch=0)


# ------------------------------------------------------------------------------- KS statistic

def test_elimination_ks_matches_scipy():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(40, 30, generator=g)
    mask = (torch.rand(40, 30, generator=g) > 0.3).float()
    ref = scipy.stats.ks_2samp(w.abs()[mask == 0].numpy(), w.abs()[mask == 1].numpy()).statistic
    assert elimination_ks(w, mask) == pytest.approx(ref, abs=1e-12)


def test_elimination_ks_known_values():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert elimination_ks(w, torch.tensor([0.0, 0.0, 1.0, 1.0])) == 1.0      # complete separation
    assert elimination_ks(w, torch.tensor([0.0, 1.0, 1.0, 0.0])) == 0.5
    net = _net(sizes=(50, 80, 4))
    m = prune_weights_layerwise(net, 0.5)["fc1.weight"]
    assert elimination_ks(net.fc1.weight, m) == 1.0                          # weight pruning
    with pytest.raises(ValueError, match="at least one"):
        elimination_ks(w, torch.ones(4))
    with pytest.raises(ValueError, match="shape"):
        elimination_ks(w, torch.ones(3))


def test_ks_at_init_shrinks_like_inverse_sqrt_fan_in():
    """The chapter's conjecture: KS ~ c / sqrt(fan_in) for unit pruning at initialisation."""
    fans = [16, 64, 256, 1024]
    ks = [np.mean([ks_at_init(n, 400, 0.5, seed=s) for s in range(3)]) for n in fans]
    slope = np.polyfit(np.log(fans), np.log(ks), 1)[0]
    assert -0.7 < slope < -0.3
    assert ks_at_init(64, 100, 0.5, method="weight") == 1.0
    with pytest.raises(ValueError, match="fan_in"):
        ks_at_init(1, 10, 0.5)


# ------------------------------------------------------------------------------- timing

def test_time_interleaved_and_crossover():
    calls = []
    out = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                           repeats=3, warmup=1)
    assert set(out) == {"a", "b"} and all(v >= 0 for v in out.values())
    assert calls.count("a") == calls.count("b") == 4
    with pytest.raises(ValueError, match="repeats"):
        time_interleaved({"a": lambda: None}, repeats=0)
    with pytest.raises(ValueError, match="fns"):
        time_interleaved({})
    assert crossover([0.0, 0.5, 0.9, 0.99], [3.0, 1.5, 0.8, 0.2]) == 0.9
    assert crossover([0.0, 0.5, 0.9], [0.5, 1.5, 0.8]) == 0.9       # must stay below 1
    assert crossover([0.0, 0.5], [2.0, 1.1]) is None
    with pytest.raises(ValueError):
        crossover([0.1], [])


# ------------------------------------------------------------------------------- locality

def test_pairwise_distance_known_values():
    mask = torch.zeros(3, 16)
    mask[0, [0, 1]] = 1                     # neighbours on a 4x4 grid: distance 1
    mask[1, [0, 15]] = 1                    # opposite corners: 3 sqrt(2)
    mask[2, 5] = 1                          # one pixel: undefined
    d = pairwise_distance(mask)
    assert d[0] == pytest.approx(1.0) and d[1] == pytest.approx(3 * math.sqrt(2))
    assert math.isnan(d[2])
    with pytest.raises(ValueError, match="square"):
        pairwise_distance(torch.ones(2, 10))


def test_random_mask_like_keeps_counts():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(20, 64, generator=g) > 0.8).float()
    layer = random_mask_like(mask, g, "layer")
    marg = random_mask_like(mask, g, "marginal")
    assert layer.sum() == mask.sum() and layer.shape == mask.shape
    assert torch.equal(marg.sum(dim=1), mask.sum(dim=1))
    assert bool((marg[:, mask.sum(0) == 0] == 0).all())          # never-kept pixels stay out
    with pytest.raises(ValueError, match="match"):
        random_mask_like(mask, g, "pixel")


# ------------------------------------------------------------------------------- training glue

def _tiny_split():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 16, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return Split(x[:80], y[:80], x[80:], y[80:], "toy")


def test_train_with_best_epoch_restores_best_and_finetune_runs():
    data = _tiny_split()
    net = _net(sizes=(16, 32, 24, 4))
    run = train_with_best_epoch(net, data, epochs=4, batch_size=16, lr=1e-2, seed=0)
    h = run["history"]
    assert h["epoch"] == [1, 2, 3, 4] and 1 <= run["best_epoch"] <= 4
    assert run["best_epoch"] == int(np.argmin(h["test_loss"])) + 1
    from utils.training import evaluate
    restored = evaluate(net, data.x_test, data.y_test)["loss"]
    assert restored == pytest.approx(min(h["test_loss"]), rel=1e-5)
    for method in ("weight", "unit"):
        masks = prune_layerwise(net, method, 0.5)
        before = evaluate_pruned(net, masks, data.x_test, data.y_test)
        after = finetune_pruned(net, masks, data, method, steps=5, batch_size=16, seed=0)
        assert set(before) == set(after) == {"loss", "accuracy"}
    with pytest.raises(ValueError, match="method"):
        finetune_pruned(net, masks, data, "channel", steps=1)
    with pytest.raises(ValueError, match="epochs"):
        train_with_best_epoch(net, data, epochs=0)


def test_plots_draw():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    data = _tiny_split()
    net = _net(sizes=(16, 32, 24, 4))
    runs = [train_with_best_epoch(_net(sizes=(16, 32, 24, 4), seed=s), data, epochs=2,
                                  batch_size=16, seed=s) for s in range(2)]
    fig, axes = plt.subplots(1, 2)
    plot_training_curves(axes, runs)
    records = [{"method": m, "k": k, "seed": s, "test_loss": 1.0, "test_accuracy": 0.5,
                "ft_test_loss": 0.5, "ft_test_accuracy": 0.6}
               for m in ("weight", "unit") for k in (0.0, 0.5) for s in (0, 1)]
    plot_pruning_curves(axes, records)
    ks = plot_elimination_histograms(axes, net.fc2.weight.detach(), 0.5)
    assert ks["weight"] == 1.0 and 0 <= ks["unit"] < 1
    rows = [{"batch": 100, "k": k, "ratio": {"dense (zeros in)": 1.0, "csr": 2 - k}}
            for k in (0.0, 0.9)]
    plot_forward_ratios(axes[0], rows, 100)
    plot_k_explorer(plt.figure(), 0.5, records=records, weight=net.fc2.weight.detach())
    plt.close("all")


def test_pruned_representations_agree():
    from utils.sparse import REPRESENTATIONS, pruned_representations
    net = _net(sizes=(20, 30, 16, 5))
    x = torch.randn(6, 20)
    reps = pruned_representations(net, 0.5)
    assert tuple(reps) == REPRESENTATIONS
    ref = masked_copy(net, prune_weights_layerwise(net, 0.5))(x)
    for name in ("dense (zeros in)", "coo", "csr"):
        assert torch.allclose(reps[name](x), ref, atol=1e-5)
    unit_ref = masked_copy(net, prune_units_layerwise(net, 0.5))(x)
    assert torch.allclose(reps["shrunk (unit)"](x), unit_ref, atol=1e-5)
    assert reps["shrunk (unit)"].fc1.out_features == 15


def test_random_mask_like_marginal_follows_pixel_frequencies():
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(4000, 4)
    mask[:, 0] = 1                                   # column 0 kept by every unit
    mask[:1000, 1] = 1                               # column 1 by a quarter of them
    out = random_mask_like(mask, g, "marginal")
    assert torch.equal(out.sum(dim=1), mask.sum(dim=1))
    # the 1000 two-pixel rows always take both columns; single-pixel rows take column 0 w.p. 4/5
    single = out[1000:]
    assert abs(single[:, 0].mean().item() - 0.8) < 0.03
    assert bool((out[:, 2:] == 0).all())


def test_evaluate_pruned_equals_masked_dense_evaluation():
    from utils.training import evaluate
    data = _tiny_split()
    net = _net(sizes=(16, 32, 24, 4), dtype=torch.float64)
    x = data.x_test.double()
    for method in ("weight", "unit"):
        masks = prune_layerwise(net, method, 0.6)
        got = evaluate_pruned(net, masks, x, data.y_test)
        ref = evaluate(masked_copy(net, masks), x, data.y_test)
        assert got["accuracy"] == ref["accuracy"]
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-12)


def test_time_interleaved_discards_warmup_and_crossover_needs_strictly_faster():
    import time as _time
    state = {"first": True}

    def slow_once():
        if state["first"]:
            state["first"] = False
            _time.sleep(0.3)

    out = time_interleaved({"f": slow_once}, repeats=1, warmup=1)
    assert out["f"] < 0.1                                 # the slow warm-up call is not timed
    assert crossover([0.0, 0.5], [1.0, 0.5]) == 0.5       # equal to dense is not faster


def test_finetune_pruned_is_deterministic_and_uses_a_subset():
    data = _tiny_split()
    net = _net(sizes=(16, 32, 24, 4))
    masks = prune_layerwise(net, "weight", 0.5)
    a = finetune_pruned(net, masks, data, "weight", steps=2, batch_size=8, seed=3)
    b = finetune_pruned(net, masks, data, "weight", steps=2, batch_size=8, seed=3)
    assert a == b
    whole = finetune_pruned(net, masks, data, "unit", steps=20, batch_size=8, seed=3)
    assert set(whole) == {"loss", "accuracy"}            # 160 > 80 examples: all of them
