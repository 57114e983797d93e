"""Tests of utils.pruning: scorers, eq. 7, masks, layer collapse, invalid input."""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from utils.models import mlp
from utils.pruning import (METHODS, canonical_masks, find_critical, global_density, is_collapsed, jaccard,
                           kaiming_init, layer_density, mask_agreement, max_compression, path_count, prune,
                           prunable_names, score, select_masks, sweep, critical_compression, synflow_objective,
                           synflow_score_formula, synflow_scores, zero_biases)

torch.set_num_threads(1)


def _net(sizes=(8, 6, 5, 3), bias=True, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return mlp(list(sizes), bias=bias, dtype=dtype)


def _batch(n=32, d=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


class SmallConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


# ---------------------------------------------------------------------------------------------- eq. 6, eq. 7

def test_synflow_known_values():
    net = mlp([2, 2, 1], bias=False)
    with torch.no_grad():
        net.fc1.weight.fill_(1.0)
        net.fc2.weight.fill_(-2.0)
    s = synflow_scores(net)
    assert torch.equal(s["fc2.weight"], torch.tensor([[4.0, 4.0]], dtype=torch.float64))
    assert torch.equal(s["fc1.weight"], torch.full((2, 2), 2.0, dtype=torch.float64))
    assert synflow_objective(net) == 8.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eq7_autograd_equals_explicit_matrix_products(seed):
    net = _net((7, 9, 4, 6, 3), bias=False, seed=seed, dtype=torch.float64)
    auto = synflow_scores(net)
    formula = synflow_score_formula([net[i].weight for i in range(0, len(net), 2)])
    for name, f in zip(prunable_names(net), formula):
        torch.testing.assert_close(auto[name], f, rtol=1e-12, atol=0)
    # every layer carries the whole flow R_SF (layer-wise conservation)
    R = synflow_objective(net)
    for s in auto.values():
        assert math.isclose(float(s.sum()), R, rel_tol=1e-12)


def test_eq7_fails_with_nonzero_biases():
    net = _net((7, 9, 4, 3), bias=True, seed=0, dtype=torch.float64)
    auto = synflow_scores(net)
    formula = synflow_score_formula([net[i].weight for i in range(0, len(net), 2)])
    # upstream biases add flow into every later layer; the first layer sees none of it
    torch.testing.assert_close(auto["fc1.weight"], formula[0], rtol=1e-12, atol=0)
    for name, f in zip(["fc2.weight", "fc3.weight"], formula[1:]):
        assert (auto[name] > f * (1 + 1e-6)).any() and (auto[name] >= f * (1 - 1e-12)).all()
    zero_biases(net)
    auto = synflow_scores(net)
    for name, f in zip(prunable_names(net), formula):
        torch.testing.assert_close(auto[name], f, rtol=1e-12, atol=0)


def test_path_norm_by_enumerating_paths():
    net = _net((3, 2, 2), bias=False, seed=3, dtype=torch.float64)
    A, B = net.fc1.weight.abs(), net.fc2.weight.abs()
    total = sum(float(B[k, j].detach() * A[j, i].detach()) for i in range(3) for j in range(2) for k in range(2))
    assert math.isclose(synflow_objective(net), total, rel_tol=1e-12)


def test_synflow_leaves_model_unchanged():
    net = _net()
    net.train()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    synflow_scores(net)
    prune(net, "synflow", 4, iterations=5)
    assert net.training
    for n, p in net.named_parameters():
        assert p.dtype == torch.float32
        assert torch.equal(p, before[n])


def test_synflow_masked_weights_score_zero():
    net = _net(bias=False)
    masks = {n: torch.ones_like(p) for n, p in net.named_parameters() if n in prunable_names(net)}
    masks["fc2.weight"][0, :] = 0
    s = synflow_scores(net, masks)
    assert (s["fc2.weight"][0] == 0).all()
    assert (s["fc3.weight"][:, 0] == 0).all()     # unit 0 of layer 2 carries no flow any more


# ---------------------------------------------------------------------------------------------- scorers

@pytest.mark.parametrize("method", METHODS)
def test_score_shapes_and_dtype(method):
    net = _net()
    s = score(net, method, data=_batch())
    assert list(s) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    for name, p in net.named_parameters():
        if name in s:
            assert s[name].shape == p.shape and s[name].dtype == torch.float64


def test_magnitude_and_snip_known_values():
    net = _net()
    s = score(net, "magnitude")
    torch.testing.assert_close(s["fc1.weight"], net.fc1.weight.detach().abs().double())
    x, y = _batch()
    copy = _net().double()
    loss = nn.functional.cross_entropy(copy(x.double()), y)
    (g,) = torch.autograd.grad(loss, [copy.fc2.weight])
    torch.testing.assert_close(score(net, "snip", data=(x, y))["fc2.weight"], (g * copy.fc2.weight).abs().detach())


def test_grasp_is_hessian_gradient_product():
    net = _net(dtype=torch.float64)
    x, y = _batch()
    x = x.double()
    params = [net.fc1.weight, net.fc2.weight, net.fc3.weight]

    def loss_of(ws):
        h = torch.relu(x @ ws[0].T + net.fc1.bias)
        h = torch.relu(h @ ws[1].T + net.fc2.bias)
        return nn.functional.cross_entropy((h @ ws[2].T + net.fc3.bias) / 200.0, y)

    g = torch.autograd.grad(loss_of(params), params)
    hg = torch.autograd.functional.hvp(lambda *ws: loss_of(ws), tuple(p.detach() for p in params), g)[1]
    s = score(net, "grasp", data=(x, y))
    for name, h, p in zip(prunable_names(net), hg, params):
        torch.testing.assert_close(s[name], (h * p).detach(), rtol=1e-8, atol=1e-14)


def _grasp_authors_masks(net, x, y, keep_ratio, T=200.0):
    """The rule of the GraSP authors' code (alecwangcq/GraSP, pruner/GraSP.py), re-implemented: score
    S = -theta * Hg with logits / T, remove the int(N (1 - keep_ratio)) largest S. (Their code keeps
    ``S <= accept``, the smallest removed score, which keeps that one weight too; ``<`` keeps exactly
    the weights it means to.)"""
    work = copy_module(net).double()
    ws = [m.weight for m in work.modules() if isinstance(m, nn.Linear)]
    loss = lambda: nn.functional.cross_entropy(work(x.double()) / T, y)     # noqa: E731
    g = [t.detach() for t in torch.autograd.grad(loss(), ws)]
    z = sum((a * b).sum() for a, b in zip(g, torch.autograd.grad(loss(), ws, create_graph=True)))
    hg = torch.autograd.grad(z, ws)
    S = [(-w * h).detach() for w, h in zip(ws, hg)]
    flat = torch.cat([t.flatten() for t in S])
    n_remove = int(flat.numel() * (1 - keep_ratio))
    accept = torch.topk(flat, n_remove, sorted=True).values[-1]
    return [(t < accept).double() for t in S]


def copy_module(net):
    import copy

    return copy.deepcopy(net)


def test_grasp_keeps_what_the_grasp_authors_keep_and_the_sign_matters():
    net = _net((8, 12, 10, 3), seed=1)
    x, y = _batch(n=48, seed=2)
    density = 0.3
    n = sum(p.numel() for n_, p in net.named_parameters() if n_.endswith("weight"))
    ours = prune(net, "grasp", 1 / density, iterations=1, data=(x, y))
    # the authors keep N - int(N (1 - d)) weights; with no ties that is round(d N) here
    assert n - int(n * (1 - density)) == round(density * n)
    theirs = _grasp_authors_masks(net, x, y, density)
    for name, t in zip(prunable_names(net), theirs):
        assert torch.equal(ours[name].double(), t), name
    # the sign matters here: keeping the largest -(Hg)*theta instead keeps a different set
    s = score(net, "grasp", data=(x, y))
    flipped = select_masks({k: -v for k, v in s.items()}, density)
    overlap = sum(int((ours[k].double() * flipped[k]).sum()) for k in ours)
    assert overlap < 0.5 * round(density * n)


def test_grasp_temperature_changes_the_ranking():
    from utils.pruning import GRASP_TEMPERATURE, grasp_scores

    net = _net((8, 12, 10, 3), seed=1)
    data = _batch(n=48, seed=2)
    hot, cold = grasp_scores(net, data), grasp_scores(net, data, temperature=1.0)
    assert GRASP_TEMPERATURE == 200.0
    assert torch.equal(hot["fc1.weight"], score(net, "grasp", data=data)["fc1.weight"])
    a, b = select_masks(hot, 0.3), select_masks(cold, 0.3)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="temperature"):
        grasp_scores(net, data, temperature=0.0)


# ---------------------------------------------------------------------------------------------- prune contract

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("compression", [1, 3.7, 20])
def test_prune_density_contract(method, compression):
    net = _net()
    masks = prune(net, method, compression, iterations=5, data=_batch())
    n = sum(m.numel() for m in masks.values())
    assert list(masks) == prunable_names(net)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == round(n / compression)
    for m in masks.values():
        assert set(m.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("method", METHODS)
def test_prune_layerwise(method):
    net = _net()
    masks = prune(net, method, 4, iterations=3, data=_batch(), scope="layer")
    for name, m in masks.items():
        assert int(m.sum()) == max(1, round(m.numel() / 4))


def test_prune_conv_net():
    net = SmallConv()
    x = torch.randn(8, 1, 6, 6)
    y = torch.randint(0, 3, (8,))
    for method in METHODS:
        masks = prune(net, method, 10, iterations=4, data=(x, y), input_shape=(1, 6, 6))
        assert list(masks) == ["conv1.weight", "conv2.weight", "fc.weight"]
        total = sum(m.numel() for m in masks.values())
        assert sum(int(m.sum()) for m in masks.values()) == round(total / 10)
        assert isinstance(is_collapsed(masks), bool)


@settings(max_examples=25, deadline=None)
@given(compression=st.floats(min_value=1.0, max_value=93.0), iterations=st.integers(1, 6))
def test_prune_keeps_exactly_round_n_over_rho(compression, iterations):
    net = _net()   # 8*6 + 6*5 + 5*3 = 93 weights
    masks = prune(net, "synflow", compression, iterations=iterations)
    assert sum(int(m.sum()) for m in masks.values()) == round(93 / compression)


def test_select_masks_ties_and_no_revival():
    s = {"a": torch.zeros(6), "b": torch.tensor([3.0, 0.0])}
    m = select_masks(s, 0.5)
    assert sum(int(v.sum()) for v in m.values()) == 4       # a threshold rule "score > 0" would keep 1
    prev = {"a": torch.tensor([0.0, 1, 1, 1, 1, 1]), "b": torch.tensor([1.0, 1.0])}
    m = select_masks({"a": torch.tensor([9.0, 0, 0, 0, 0, 0]), "b": torch.tensor([1.0, 1.0])}, 0.5, masks=prev)
    assert m["a"][0] == 0                                     # a masked weight never comes back
    assert sum(int(v.sum()) for v in m.values()) == 4


def test_global_density_rounding():
    net = _net()
    coarse = prune(net, "synflow", 2, iterations=1)
    assert global_density(coarse) == pytest.approx(46 / 93)     # round(46.5) = 46 (round half to even)
    fine = prune(net, "synflow", 10, iterations=10)
    assert global_density(fine) == pytest.approx(9 / 93)


# ---------------------------------------------------------------------------------------------- collapse

def test_layer_density_path_count_and_collapse():
    masks = {"fc1.weight": torch.ones(2, 3), "fc2.weight": torch.tensor([[1.0, 0.0]])}
    assert layer_density(masks) == {"fc1.weight": 1.0, "fc2.weight": 0.5}
    assert path_count(masks) == 3.0 and not is_collapsed(masks)
    empty = {"fc1.weight": torch.ones(2, 3), "fc2.weight": torch.zeros(1, 2)}
    assert is_collapsed(empty)
    no_path = {"fc1.weight": torch.tensor([[1.0, 1, 1], [0, 0, 0]]), "fc2.weight": torch.tensor([[0.0, 1.0]])}
    assert path_count(no_path) == 0.0 and is_collapsed(no_path)


def test_max_compression_known_value():
    assert max_compression(mlp([64, 100, 10])) == 3700.0
    assert max_compression(mlp([64, 100, 100, 100, 100, 100, 10])) == 7900.0


def test_synflow_reaches_rho_max_on_small_net_magnitude_does_not():
    torch.manual_seed(0)
    net = kaiming_init(mlp([6, 20, 20, 3]), seed=0)
    rho_max = max_compression(net)       # (120 + 400 + 60) / 3
    masks = prune(net, "synflow", rho_max, iterations=100)
    assert not is_collapsed(masks)
    assert path_count(masks) >= 1
    grid = [i / 4 for i in range(0, 12)]
    assert find_critical(net, "magnitude", grid) < math.log10(rho_max) - 0.2
    assert find_critical(net, "synflow", grid, iterations=20, scope="layer") >= 2.0


def test_sweep_and_critical_compression():
    net = kaiming_init(mlp([6, 20, 20, 3]), seed=0)
    recs = sweep(net, ["magnitude", "synflow"], [0, 1, 2], progress=False)
    assert len(recs) == 6 and {r["method"] for r in recs} == {"magnitude", "synflow"}
    crit = critical_compression(recs)
    assert crit["synflow"] == 2.0
    rows = [{"method": "m", "log10_compression": c, "collapsed": c >= 1} for c in (0, 1, 2)]
    assert critical_compression(rows) == {"m": 0}
    assert math.isnan(critical_compression([{"method": "m", "log10_compression": 0, "collapsed": True}])["m"])


def test_canonical_masks_undo_hidden_permutations():
    g = torch.Generator().manual_seed(0)
    m1 = (torch.rand(5, 4, generator=g) < 0.6).double()
    m2 = (torch.rand(3, 5, generator=g) < 0.6).double()
    perm = torch.randperm(5, generator=g)
    a = {"fc1.weight": m1, "fc2.weight": m2}
    b = {"fc1.weight": m1[perm], "fc2.weight": m2[:, perm]}
    ca, cb = canonical_masks(a), canonical_masks(b)
    for n in ca:
        assert torch.equal(ca[n], cb[n])
    assert mask_agreement(a, b)["jaccard"] == [1.0, 1.0]
    assert mask_agreement(a, b)["profile_distance"] == 0.0
    assert jaccard(torch.tensor([1.0, 1, 0]), torch.tensor([1.0, 0, 1])) == pytest.approx(1 / 3)


# ---------------------------------------------------------------------------------------------- invalid input

@pytest.mark.parametrize("compression", [0.5, 0.999, -1, float("nan"), float("inf"), 1000])
def test_bad_compression(compression):
    with pytest.raises(ValueError, match="compression"):
        prune(_net(), "magnitude", compression)


def test_bad_compression_type():
    with pytest.raises(TypeError, match="compression"):
        prune(_net(), "magnitude", "10")


def test_bad_method():
    with pytest.raises(ValueError, match="method"):
        score(_net(), "obd")
    with pytest.raises(ValueError, match="method"):
        prune(_net(), "obd", 2)


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_data_methods_need_data(method):
    with pytest.raises(ValueError, match="data"):
        score(_net(), method)
    with pytest.raises(ValueError, match="data"):
        prune(_net(), method, 2)
    with pytest.raises(TypeError, match="data"):
        score(_net(), method, data=[1, 2, 3])


def test_no_prunable_layer():
    with pytest.raises(ValueError, match="no prunable layer"):
        prune(nn.Sequential(nn.ReLU()), "synflow", 2)
    with pytest.raises(ValueError, match="no prunable layer"):
        max_compression(nn.Sequential(nn.Tanh()))
    with pytest.raises(TypeError, match="model"):
        score("not a model", "magnitude")


def test_bad_iterations_schedule_scope_masks_input_shape():
    net = _net()
    with pytest.raises(ValueError, match="iterations"):
        prune(net, "synflow", 2, iterations=0)
    with pytest.raises(ValueError, match="schedule"):
        prune(net, "synflow", 2, schedule="cubic")
    with pytest.raises(ValueError, match="scope"):
        prune(net, "synflow", 2, scope="neuron")
    with pytest.raises(ValueError, match="masks"):
        synflow_scores(net, {"fc1.weight": torch.ones(2, 2)})
    with pytest.raises(ValueError, match="masks"):
        synflow_scores(net, {"fc1.weight": torch.full((6, 8), 0.5)})
    with pytest.raises(ValueError, match="input_shape"):
        synflow_scores(SmallConv())
    with pytest.raises(ValueError, match="density"):
        select_masks({"a": torch.ones(3)}, 0.0)


def test_schedules_agree_on_final_density():
    net = _net()
    for schedule in ("exponential", "linear"):
        masks = prune(net, "synflow", 5, iterations=7, schedule=schedule)
        assert sum(int(m.sum()) for m in masks.values()) == round(93 / 5)


def test_threshold_rule_over_prunes_on_ties():
    s = {"a": torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0, 3.0])}
    assert int(select_masks(s, 4 / 6)["a"].sum()) == 4
    assert int(select_masks(s, 4 / 6, ties="threshold")["a"].sum()) == 2     # every tied 0 removed
    with pytest.raises(ValueError, match="ties"):
        select_masks(s, 0.5, ties="random")


def test_plot_functions_draw():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from utils.pruning import plot_accuracy_vs_compression, plot_collapse_sweep, plot_layer_profile, plot_method_layers

    net = kaiming_init(mlp([6, 20, 20, 3]), seed=0)
    recs = sweep(net, ["magnitude", "synflow"], [0, 1, 2.5], progress=False)
    fig = plt.figure()
    plot_layer_profile(fig, "magnitude", 2.5, records=recs)
    fig, axes = plt.subplots(1, 3)
    plot_collapse_sweep(axes[:2], recs, rho_max=max_compression(net))
    plot_method_layers(axes[2], recs, "synflow", rho_max=max_compression(net))
    fig, ax = plt.subplots()
    plot_accuracy_vs_compression(ax, [{"method": "m", "log10_compression": c, "seed": s, "test_accuracy": 0.5}
                                      for c in (0, 1) for s in (0, 1)])
    plt.close("all")
    with pytest.raises(ValueError, match="method"):
        plot_layer_profile(plt.figure(), "snip", 1.0, records=recs)


def test_digits_convnet_prunes_and_synflow_beats_magnitude():
    from utils.pruning import digits_convnet

    net = digits_convnet(seed=0)
    assert max_compression(net) == 3442.0
    x = torch.randn(16, 64)
    assert net(x).shape == (16, 10)
    masks = prune(net, "synflow", 100, iterations=20, data=(x, torch.zeros(16, dtype=torch.long)))
    assert list(masks) == ["1.weight", "3.weight", "5.weight", "8.weight"]
    assert not is_collapsed(masks)
    assert is_collapsed(prune(net, "magnitude", 100, iterations=1))
    with pytest.raises(ValueError, match="channels"):
        digits_convnet(channels=())


def test_each_scorer_is_defined_once_in_utils(repo_root):
    import re

    sources = "\n".join(p.read_text() for p in (repo_root / "utils").rglob("*.py"))
    for method in METHODS:
        assert len(re.findall(rf"^def {method}_scores\(", sources, flags=re.M)) == 1, method


# ---------------------------------------------------------------------------------------------- collapse criteria

def _misaligned_net():
    """2-2-1 without biases: the large first-layer weights feed hidden unit 1, the large second-layer
    weight leaves hidden unit 0, so magnitude pruning loses every path before it empties a layer."""
    net = mlp([2, 2, 1], bias=False)
    with torch.no_grad():
        net.fc1.weight.copy_(torch.tensor([[0.1, 0.2], [0.9, 0.8]]))
        net.fc2.weight.copy_(torch.tensor([[2.0, 0.05]]))
    return net


MISALIGNED_GRID = [0.0, 0.1, 0.3, 0.5, 0.75]      # keeps 6, 5, 3, 2, 1 of the 6 weights
MISALIGNED_RECORDS = [                             # (log10 rho, density per layer, paths, no path left)
    (0.0, [1.0, 1.0], 4.0, False),
    (0.1, [1.0, 0.5], 2.0, False),
    (0.3, [0.5, 0.5], 0.0, True),                  # no path, but no layer is empty
    (0.5, [0.25, 0.5], 0.0, True),
    (0.75, [0.0, 0.5], 0.0, True),                 # the first layer is empty
]


def test_collapse_criteria_differ_on_hand_built_masks():
    no_path = {"fc1.weight": torch.tensor([[0.0, 0.0], [1.0, 1.0]]), "fc2.weight": torch.tensor([[1.0, 0.0]])}
    empty = {"fc1.weight": torch.zeros(2, 2), "fc2.weight": torch.tensor([[1.0, 0.0]])}
    alive = {"fc1.weight": torch.tensor([[1.0, 0.0], [0.0, 0.0]]), "fc2.weight": torch.tensor([[1.0, 0.0]])}
    assert (is_collapsed(no_path, "no-path"), is_collapsed(no_path, "empty-layer")) == (True, False)
    assert (is_collapsed(empty, "no-path"), is_collapsed(empty, "empty-layer")) == (True, True)
    assert (is_collapsed(alive, "no-path"), is_collapsed(alive, "empty-layer")) == (False, False)
    assert is_collapsed(no_path) is True                      # the default is "no-path"
    with pytest.raises(ValueError, match="criterion must be one of"):
        is_collapsed(no_path, "empty")


def test_sweep_records_exact_rows_on_a_hand_built_net():
    recs = sweep(_misaligned_net(), ["magnitude"], MISALIGNED_GRID, progress=False)
    got = [(r["log10_compression"], r["density"], r["paths"], r["collapsed"]) for r in recs]
    assert got == MISALIGNED_RECORDS
    assert all(r["method"] == "magnitude" for r in recs)
    assert critical_compression(recs) == {"magnitude": 0.1}
    assert critical_compression(recs, "no-path") == {"magnitude": 0.1}
    assert critical_compression(recs, "empty-layer") == {"magnitude": 0.5}
    with pytest.raises(ValueError, match="criterion"):
        critical_compression(recs, "paths")
    stopped = sweep(_misaligned_net(), ["magnitude"], MISALIGNED_GRID, stop_at_collapse=True, progress=False)
    assert [r["log10_compression"] for r in stopped] == [0.0, 0.1, 0.3]


def test_find_critical_takes_the_criterion():
    net = _misaligned_net()
    assert find_critical(net, "magnitude", MISALIGNED_GRID) == 0.1
    assert find_critical(net, "magnitude", MISALIGNED_GRID, criterion="no-path") == 0.1
    assert find_critical(net, "magnitude", MISALIGNED_GRID, criterion="empty-layer") == 0.5
    # layer-wise masking never empties a layer: only "no-path" can see it collapse
    wide = kaiming_init(mlp([6, 20, 20, 3]), seed=0)
    grid = [0.0, 0.5, 1.0, 1.5, 2.0]
    assert find_critical(wide, "random", grid, scope="layer", criterion="empty-layer") == 2.0
    assert find_critical(wide, "random", grid, scope="layer") < 2.0
    with pytest.raises(ValueError, match="criterion"):
        find_critical(net, "magnitude", MISALIGNED_GRID, criterion="layer")


def test_critical_compression_rows_and_edge_cases():
    rows = [{"method": m, "log10_compression": c, "density": d, "collapsed": k}
            for m, c, d, k in [("a", 2.0, [0.01, 0.0], True), ("a", 1.0, [0.1, 0.1], False),
                               ("b", 1.0, [0.1, 0.0], True), ("b", 2.0, [0.0, 0.0], True)]]
    crit = critical_compression(rows, "empty-layer")
    assert crit["a"] == 1.0 and math.isnan(crit["b"])
    assert list(critical_compression(rows)) == ["a", "b"]          # in the order methods appear
    # not monotone (it can happen near rho_max): the first collapse decides, not the last intact point
    bumpy = [{"method": "c", "log10_compression": c, "density": [0.5], "collapsed": k}
             for c, k in [(1.0, False), (2.0, True), (3.0, False)]]
    assert critical_compression(bumpy) == {"c": 1.0}
    with pytest.raises(ValueError, match="records"):
        critical_compression([])


# ---------------------------------------------------------------------------------------------- the data behind the figures and tables

def test_mask_agreement_exact_values():
    a = {"fc1.weight": torch.tensor([[1.0, 1, 0], [0, 0, 1]]), "fc2.weight": torch.tensor([[1.0, 0]])}
    b = {"fc1.weight": torch.tensor([[1.0, 0, 0], [0, 1, 1]]), "fc2.weight": torch.tensor([[1.0, 1]])}
    raw = mask_agreement(a, b, canonical=False)
    assert raw == {"jaccard": [0.5, 0.5], "profile_distance": 0.5}          # 2/4 and 1/2; |0.5 - 1.0|
    swapped = {"fc1.weight": a["fc1.weight"][[1, 0]], "fc2.weight": a["fc2.weight"][:, [1, 0]]}
    assert mask_agreement(a, swapped, canonical=False) == {"jaccard": [0.0, 0.0], "profile_distance": 0.0}
    assert mask_agreement(a, swapped) == {"jaccard": [1.0, 1.0], "profile_distance": 0.0}
    assert mask_agreement(b, a, canonical=False)["jaccard"] == [0.5, 0.5]    # symmetric
    with pytest.raises(ValueError, match="same parameters"):
        mask_agreement(a, {"fc1.weight": a["fc1.weight"]})


def test_canonical_masks_exact_order():
    # hidden unit 1 has out-degree 2, unit 0 out-degree 1, unit 2 out-degree 0: sorted 1, 0, 2
    m1 = torch.tensor([[1.0, 0], [1, 1], [0, 1]])
    m2 = torch.tensor([[1.0, 1, 0], [0, 1, 0]])
    c = canonical_masks({"fc1.weight": m1, "fc2.weight": m2})
    assert c["fc1.weight"].tolist() == [[1, 1], [1, 0], [0, 1]]
    assert c["fc2.weight"].tolist() == [[1, 1, 0], [1, 0, 0]]


def _records():
    return [{"method": "magnitude", "log10_compression": c, "density": d, "paths": p, "collapsed": k}
            for c, d, p, k in MISALIGNED_RECORDS]


def test_layer_profile_draws_the_nearest_records_densities():
    import matplotlib.pyplot as plt
    from utils.pruning import plot_layer_profile

    fig = plt.figure()
    plot_layer_profile(fig, "magnitude", 0.55, records=_records())     # nearest swept: 0.5
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [0.25, 0.5]
    assert "COLLAPSED" in ax.get_title() and "0.50" in ax.get_title()
    fig = plt.figure()
    plot_layer_profile(fig, "magnitude", 0.75, records=_records())
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert math.isnan(heights[0]) and heights[1] == 0.5                 # the empty layer has no bar ...
    crosses = [line for line in ax.lines if line.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [1]    # ... but a red cross


def test_collapse_sweep_and_method_layers_plot_the_records():
    import matplotlib.pyplot as plt
    from utils.pruning import plot_collapse_sweep, plot_method_layers

    fig, (ax_d, ax_p, ax_l) = plt.subplots(1, 3)
    plot_collapse_sweep((ax_d, ax_p), _records())
    rho = [10.0 ** c for c, *_ in MISALIGNED_RECORDS]
    assert list(ax_d.lines[0].get_xdata()) == rho
    assert list(ax_d.lines[0].get_ydata()) == [1.0, 0.5, 0.5, 0.25, 1e-6]   # sparsest layer, 0 drawn at 1e-6
    assert list(ax_p.lines[0].get_ydata()) == [4.0, 2.0, 0.5, 0.5, 0.5]     # paths, 0 drawn at 0.5
    assert list(ax_d.lines[1].get_ydata()) == [0.5, 0.25, 1e-6]             # hollow markers: collapsed
    plot_method_layers(ax_l, _records(), "magnitude")
    assert list(ax_l.lines[0].get_ydata()) == [1.0, 1.0, 0.5, 0.25, 1e-5]   # layer 1
    assert list(ax_l.lines[1].get_ydata()) == [1.0, 0.5, 0.5, 0.5, 0.5]     # layer 2
    assert ax_l.lines[0].get_label() == "layer 1"


def test_accuracy_vs_compression_plots_mean_and_band():
    import matplotlib.pyplot as plt
    from utils.pruning import plot_accuracy_vs_compression

    results = [{"method": "snip", "log10_compression": c, "seed": s, "test_accuracy": acc}
               for c, s, acc in [(1.0, 0, 0.9), (1.0, 1, 0.7), (2.0, 0, 0.1), (2.0, 1, 0.3)]]
    fig, ax = plt.subplots()
    plot_accuracy_vs_compression(ax, results, chance=None)
    line = ax.lines[0]
    assert list(line.get_xdata()) == [10.0, 100.0]
    assert line.get_ydata() == pytest.approx([80.0, 20.0])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert min(band) == pytest.approx(10.0) and max(band) == pytest.approx(90.0)


# ---------------------------------------------------------------------------------------------- the fast SynFlow loop

def _synflow_by_select_masks(net, rho, iterations, scope="global", schedule="exponential", input_shape=None):
    """Algorithm 1 spelled out with the general pieces: score the masked net, select, repeat."""
    masks = None
    for k in range(1, iterations + 1):
        d = rho ** (-k / iterations) if schedule == "exponential" else 1 - (1 - 1 / rho) * k / iterations
        masks = select_masks(synflow_scores(net, masks, input_shape=input_shape), d, masks=masks, scope=scope)
    return masks


@pytest.mark.parametrize("case", [
    dict(sizes=(8, 6, 5, 3), bias=True, rho=20, iterations=10),
    dict(sizes=(8, 6, 5, 3), bias=False, rho=31, iterations=20),            # rho_max: many ties at 0
    dict(sizes=(8, 6, 5, 3), bias=True, rho=25, iterations=15, scope="layer"),
    dict(sizes=(10, 20, 20, 4), bias=True, rho=40, iterations=12, schedule="linear"),
    dict(sizes=(10, 20, 20, 4), bias=False, rho=120, iterations=30, kaiming=True),
])
def test_fast_synflow_prune_equals_score_and_select_at_every_step(case):
    net = _net(case["sizes"], bias=case["bias"], seed=1)
    if case.get("kaiming"):
        kaiming_init(net, seed=2)
    kw = {k: case[k] for k in ("scope", "schedule") if k in case}
    fast = prune(net, "synflow", case["rho"], iterations=case["iterations"], **kw)
    slow = _synflow_by_select_masks(net, case["rho"], case["iterations"], **kw)
    assert list(fast) == list(slow)
    for name in fast:
        assert torch.equal(fast[name], slow[name].float()), name


def test_fast_synflow_prune_equals_score_and_select_on_a_conv_net():
    net = SmallConv()
    fast = prune(net, "synflow", 50, iterations=10, input_shape=(1, 6, 6))
    slow = _synflow_by_select_masks(net, 50, 10, input_shape=(1, 6, 6))
    assert all(torch.equal(fast[n], slow[n].float()) for n in fast)


def test_ties_are_broken_by_position_first():
    s = {"a.weight": torch.tensor([0.5, 0.0, 0.0]), "b.weight": torch.tensor([0.0, 1.0])}
    kept = select_masks(s, 0.6)                     # k = 3: 1.0, 0.5 and the first 0.0 by position
    assert kept["a.weight"].tolist() == [1.0, 1.0, 0.0] and kept["b.weight"].tolist() == [0.0, 1.0]
    dead = {"a.weight": torch.tensor([1.0, 0.0, 1.0]), "b.weight": torch.tensor([1.0, 1.0])}
    kept = select_masks(s, 0.4, masks=dead)         # k = 2 of the live ones: 1.0, 0.5
    assert kept["a.weight"].tolist() == [1.0, 0.0, 0.0] and kept["b.weight"].tolist() == [0.0, 1.0]


def test_random_scores_are_seeded_uniform_and_score_uses_them():
    from utils.pruning import SCORERS, random_scores

    net = _net()
    a, b = random_scores(net, seed=4), random_scores(net, seed=4)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert all(0 <= float(v.min()) and float(v.max()) < 1 for v in a.values())
    assert all(torch.equal(a[n], score(net, "random", seed=4)[n]) for n in a)
    assert tuple(SCORERS) == METHODS == ("random", "magnitude", "snip", "grasp", "synflow")


def test_non_contiguous_weights_take_the_general_path_with_the_same_masks():
    net = SmallConv()
    fast = prune(net, "synflow", 30, iterations=8, input_shape=(1, 6, 6))
    channels_last = SmallConv()
    channels_last.load_state_dict(net.state_dict())
    channels_last.conv2.to(memory_format=torch.channels_last)
    assert not channels_last.conv2.weight.is_contiguous()
    slow = prune(channels_last, "synflow", 30, iterations=8, input_shape=(1, 6, 6))
    assert all(torch.equal(fast[n], slow[n]) for n in fast)


# ------------------------------------------------------------------ issue 16: the paper's Fig. 1, the control

def test_accuracy_plot_draws_the_papers_axes():
    import matplotlib.pyplot as plt
    from utils.pruning import plot_accuracy_vs_compression

    results = [{"method": "snip", "log10_compression": c, "seed": 0, "test_accuracy": 0.5}
               for c in (1.0, 2.0)]
    fig, ax = plt.subplots()
    plot_accuracy_vs_compression(ax, results, chance=None, rho_max=7900.0, dense=[0.9, 0.7],
                                 critical={"snip": 2.5})
    vertical = [l for l in ax.lines if list(l.get_xdata()) == [7900.0, 7900.0]]
    horizontal = [l for l in ax.lines if l.get_label() == "dense"]
    assert len(vertical) == 1 and horizontal[0].get_ydata()[0] == pytest.approx(80.0)
    assert ax.get_xlim()[1] == pytest.approx(7900.0 * 1.5)
    arrow = ax.texts[0]                              # the annotation at rho_cr
    assert arrow.xy[0] == pytest.approx(10 ** 2.5)
    plt.close(fig)


def test_train_pruned_rescale_multiplies_kept_weights_by_inverse_sqrt_density():
    from utils.data import Split
    from utils.pruning import train_pruned

    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    data = Split(x, y, x, y)
    net = mlp([4, 8, 2], bias=False)
    w0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    masks = {"fc1.weight": (torch.arange(32).reshape(8, 4) % 4 == 0).float(),   # density 1/4
             "fc2.weight": torch.ones(2, 8)}
    train_pruned(net, masks, data, rescale="density", steps=1, lr=1e-300, momentum=0.0, progress=False)
    assert torch.allclose(net.fc1.weight, w0["fc1.weight"] * masks["fc1.weight"] * 2.0)
    assert torch.allclose(net.fc2.weight, w0["fc2.weight"])
    for bad in ("yes", True):
        with pytest.raises(ValueError, match="rescale must be one of"):
            train_pruned(net, masks, data, rescale=bad, steps=1)


# ------------------------------------------------------------------ issue 16: why GraSP trains badly at rho = 10

def test_activation_scales_match_a_hand_computed_forward_pass():
    from utils.pruning import activation_scales

    torch.manual_seed(0)
    net = mlp([4, 6, 3], bias=False, dtype=torch.float64)
    x = torch.randn(50, 4, dtype=torch.float64)
    masks = {"fc1.weight": (torch.arange(24).reshape(6, 4) % 2 == 0).double(), "fc2.weight": torch.ones(3, 6)}
    w1, w2 = net.fc1.weight.detach() * masks["fc1.weight"], net.fc2.weight.detach()
    z1 = x @ w1.T
    z2 = torch.relu(z1) @ w2.T
    assert activation_scales(net, masks, x) == pytest.approx([float(z1.std()), float(z2.std())], rel=1e-12)
    assert torch.count_nonzero(net.fc1.weight) == 24                   # the model itself is not masked
    # a mask that keeps only same-sign weights scales the signal up, one that keeps half at random less so
    aligned = {"fc1.weight": (net.fc1.weight > 0).double(), "fc2.weight": (net.fc2.weight > 0).double()}
    assert activation_scales(net, aligned, x.abs())[1] > activation_scales(net, masks, x.abs())[1]
    with pytest.raises(ValueError, match="x must be a batch"):
        activation_scales(net, masks, torch.randn(4))


def test_rescale_to_dense_restores_every_layers_scale_whatever_the_mask():
    from utils.data import Split
    from utils.pruning import activation_scales, rescale_to_dense_, train_pruned

    torch.manual_seed(0)
    net = mlp([5, 8, 8, 3], dtype=torch.float64)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()                                            # non-zero biases: scaled with W
    initial = {n: p.detach().clone() for n, p in net.state_dict().items()}
    x = torch.randn(40, 5, dtype=torch.float64)
    ones = {n: torch.ones_like(p) for n, p in net.named_parameters() if n.endswith("weight")}
    dense = activation_scales(net, ones, x)
    masks = {n: (p.detach() > 0.5).double() for n, p in net.named_parameters() if n.endswith("weight")}
    assert activation_scales(net, masks, x) != pytest.approx(dense, rel=0.05)   # the mask moved them
    factors = rescale_to_dense_(net, masks, x)
    assert len(factors) == 3 and all(f > 0 for f in factors)
    assert activation_scales(net, masks, x) == pytest.approx(dense, rel=1e-10)
    assert torch.equal(net.fc1.weight == 0, masks["fc1.weight"] == 0)         # the mask is applied
    # train_pruned(rescale="data") does the same on the first 256 training inputs before training
    data = Split(x, torch.randint(0, 3, (40,)), x, torch.randint(0, 3, (40,)))
    net2 = mlp([5, 8, 8, 3], dtype=torch.float64)
    net2.load_state_dict(initial)                                  # the unscaled, unmasked weights
    assert activation_scales(net2, masks, x) != pytest.approx(dense, rel=0.05)
    train_pruned(net2, masks, data, rescale="data", steps=1, lr=1e-300, momentum=0.0, progress=False)
    assert activation_scales(net2, masks, x) == pytest.approx(dense, rel=1e-6)


def test_top_direction_share_is_one_for_rank_one_outputs_and_matches_svd():
    from utils.pruning import top_direction_share

    torch.manual_seed(0)
    net = mlp([4, 6, 3], bias=False, dtype=torch.float64)
    x = torch.randn(30, 4, dtype=torch.float64)
    ones = {"fc1.weight": torch.ones(6, 4), "fc2.weight": torch.ones(3, 6)}
    z1 = x @ net.fc1.weight.detach().T
    sv2 = torch.linalg.svdvals(z1 - z1.mean(0)) ** 2
    assert top_direction_share(net, ones, x)[0] == pytest.approx(float(sv2[0] / sv2.sum()), rel=1e-12)
    one_input = {"fc1.weight": torch.tensor([[1.0, 0, 0, 0]] * 6), "fc2.weight": torch.ones(3, 6)}
    assert top_direction_share(net, one_input, x)[0] == pytest.approx(1.0)    # every unit sees x_1 only
    assert 0.2 < top_direction_share(net, ones, x)[0] < 0.9


def test_control_and_per_layer_plots_draw_their_data():
    import matplotlib.pyplot as plt
    from utils.pruning import plot_controls, plot_per_layer

    rows = [{"method": m, "log10_compression": 1.0, "seed": s, "test_accuracy": a}
            for m, accs in {"snip": (0.8, 0.9), "grasp": (0.1, 0.5)}.items() for s, a in enumerate(accs)]
    fresh = [dict(r, test_accuracy=0.7) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2)
    plot_controls(ax1, {"plain": rows, "fresh values": fresh}, ["snip", "grasp"], 1.0)
    means = sorted(float(c.lines[0].get_ydata()[0]) for c in ax1.containers)
    assert means == pytest.approx([30.0, 70.0, 70.0, 85.0])              # grasp plain, fresh x2, snip plain
    with pytest.raises(ValueError, match="no result for 'magnitude'"):
        plot_controls(ax1, {"plain": rows}, ["magnitude"], 1.0)
    plot_per_layer(ax2, {"grasp": [[1.0, 4.0], [1.0, 16.0]]}, ylabel="std", log=True)
    assert list(ax2.lines[0].get_ydata()) == pytest.approx([1.0, 8.0])    # geometric mean over seeds
    assert ax2.get_yscale() == "log"
    plot_per_layer(ax2, {"snip": [[0.2, 0.4], [0.4, 0.6]]}, ylabel="share")
    assert list(ax2.lines[1].get_ydata()) == pytest.approx([0.3, 0.5])    # arithmetic mean
    with pytest.raises(ValueError, match="> 0"):
        plot_per_layer(ax2, {"grasp": [[0.0, 1.0]]}, ylabel="std", log=True)
    plt.close(fig)
