"""Tests of utils.lottery: IMP masks, resets, random controls, early stopping,
the locality measure and the genetic search."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.data import load_mnist1d
from utils.lottery import (FULL_CONFIG, adjacent_pairs, full_run, headline,
                           mlp_factory, crossover, density, early_stopping,
                           genetic_search, global_density, imp_schedule,
                           iterative_magnitude_pruning, locality_ratio,
                           lottery_experiment, magnitude_masks, make_trainer,
                           mutate, plot_paper_axes, plot_round,
                           prunable_weights, random_masks_like, retrain,
                           split_validation, summarize)
from utils.models import mlp

torch.set_num_threads(1)


def _net(sizes=(6, 8, 7, 3), seed=0):
    torch.manual_seed(seed)
    return mlp(list(sizes))


@pytest.fixture(scope="module")
def tiny_data():
    data = load_mnist1d(seed=0, n=300)
    return split_validation(data, 40, seed=0)


def _recording_train_fn(log):
    """A train_fn that records the weights it starts from and changes them."""
    def train_fn(model, masks, on_step=None):
        log.append({k: v.detach().clone()
                    for k, v in model.state_dict().items()})
        with torch.no_grad():
            for step in range(1, 4):
                for p in model.parameters():
                    p.add_(0.1 * torch.randn_like(p))
                for n, w in prunable_weights(model).items():
                    w.mul_(masks[n])
                if on_step is not None:
                    on_step(model, step)
        return {"step": [3], "val_loss": [0.0], "test_accuracy": [1.0],
                "early_stop": {"step": 3}}
    return train_fn


# --- magnitude_masks ---------------------------------------------------------

def test_magnitude_masks_known_values():
    net = _net((4, 2, 2))
    with torch.no_grad():
        net.fc1.weight.copy_(torch.tensor([[1., -5., 3., 0.5],
                                           [2., -4., 0.1, 6.]]))
        net.fc2.weight.copy_(torch.tensor([[1., 2.], [3., 4.]]))
    m = magnitude_masks(net, 0.5, output_rate=0.25)
    assert m["fc1.weight"].tolist() == [[0., 1., 1., 0.], [0., 1., 0., 1.]]
    assert m["fc2.weight"].tolist() == [[0., 1.], [1., 1.]]     # 4 - 1
    assert m["fc1.weight"].dtype == torch.float32


def test_output_layer_default_half_rate():
    net = _net((10, 20, 10))
    m = magnitude_masks(net, 0.4)
    assert int(m["fc1.weight"].sum()) == 200 - 80
    assert int(m["fc2.weight"].sum()) == 200 - 40


def test_ties_broken_by_position():
    net = _net((4, 1, 1))
    with torch.no_grad():
        net.fc1.weight.fill_(1.0)
    m = magnitude_masks(net, 0.5)
    assert m["fc1.weight"].tolist() == [[1., 1., 0., 0.]]
    assert torch.equal(m["fc1.weight"], magnitude_masks(net, 0.5)["fc1.weight"])


@settings(max_examples=25, deadline=None)
@given(rate=st.floats(0.05, 0.6), rounds=st.integers(1, 8),
       seed=st.integers(0, 100))
def test_exact_schedule_within_one_weight_and_no_revival(rate, rounds, seed):
    net = _net((9, 13, 11, 4), seed=seed)
    masks = None
    for k in range(rounds):
        new = magnitude_masks(net, rate, masks, rounds_done=k)
        if masks is not None:                 # a pruned weight never revives
            for n in new:
                assert not bool(((new[n] > 0) & (masks[n] == 0)).any())
        masks = new
        with torch.no_grad():                 # weights move between rounds
            for p in net.parameters():
                p.add_(torch.randn_like(p))
    weights = prunable_weights(net)
    names = list(weights)
    for n in names:
        p = rate / 2 if n == names[-1] else rate
        target = weights[n].numel() * (1 - p) ** rounds
        assert abs(int(masks[n].sum()) - max(1.0, target)) <= 1.0


@settings(max_examples=25, deadline=None)
@given(rate=st.floats(0.05, 0.6), rounds=st.integers(1, 8))
def test_compounded_rounding_bound(rate, rounds):
    net = _net((9, 13, 11, 4))
    masks = None
    for _ in range(rounds):
        masks = magnitude_masks(net, rate, masks)
    for n, w in prunable_weights(net).items():
        p = rate / 2 if n == "fc3.weight" else rate
        target = max(1.0, w.numel() * (1 - p) ** rounds)
        assert abs(int(masks[n].sum()) - target) <= 0.5 / p + 1


def test_keeps_the_largest_surviving_weights():
    net = _net()
    prev = magnitude_masks(net, 0.3)
    new = magnitude_masks(net, 0.3, prev)
    w = net.fc2.weight.detach().abs()
    kept = w[new["fc2.weight"] > 0]
    dropped = w[(prev["fc2.weight"] > 0) & (new["fc2.weight"] == 0)]
    assert kept.min() >= dropped.max()


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "a", True, float("nan")])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        magnitude_masks(_net(), rate)
    with pytest.raises(ValueError, match="output_rate"):
        magnitude_masks(_net(), 0.2, output_rate=1.0)


def test_bad_previous_masks():
    net = _net()
    good = magnitude_masks(net, 0.2)
    with pytest.raises(ValueError, match="previous_masks"):
        magnitude_masks(net, 0.2, {"fc1.weight": good["fc1.weight"]})
    bad = dict(good, **{"fc1.weight": torch.ones(3, 3)})
    with pytest.raises(ValueError, match="shape"):
        magnitude_masks(net, 0.2, bad)
    bad = dict(good, **{"fc1.weight": 2 * good["fc1.weight"]})
    with pytest.raises(ValueError, match="binary"):
        magnitude_masks(net, 0.2, bad)


# --- random_masks_like and schedules -----------------------------------------

@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), rate=st.floats(0.1, 0.9))
def test_random_masks_match_per_layer_counts(seed, rate):
    masks = magnitude_masks(_net(), rate)
    rand = random_masks_like(masks, seed)
    assert list(rand) == list(masks)
    for n in masks:
        assert rand[n].shape == masks[n].shape
        assert int(rand[n].sum()) == int(masks[n].sum())
    assert density(rand) == density(masks)
    other = random_masks_like(masks, seed + 1)
    assert torch.equal(rand["fc1.weight"],
                       random_masks_like(masks, seed)["fc1.weight"])
    assert any(not torch.equal(rand[n], other[n]) for n in masks)


def test_random_masks_bad_input():
    with pytest.raises(ValueError, match="masks"):
        random_masks_like({}, 0)
    with pytest.raises(ValueError, match="seed"):
        random_masks_like({"w": torch.ones(2)}, -1)


def test_imp_schedule_lenet_paper_values():
    s = imp_schedule([784, 300, 100, 10], 15)
    paper = {3: 51.3, 7: 21.1, 9: 13.5, 12: 7.0, 15: 3.6}
    for k, v in paper.items():
        assert abs(s[k] - v) < 0.15, (k, s[k], v)
    with pytest.raises(ValueError, match="sizes"):
        imp_schedule([3], 2)


def test_density_and_global_density():
    m = {"a": torch.tensor([1., 0.]), "b": torch.tensor([1., 1., 1., 0.])}
    assert density(m) == {"a": 0.5, "b": 0.75}
    assert global_density(m) == 4 / 6


# --- IMP resets --------------------------------------------------------------

def _make(seed):
    torch.manual_seed(seed)
    return mlp([5, 6, 3])


def test_reset_init_restores_w0_exactly_on_kept_weights():
    log = []
    out = iterative_magnitude_pruning(_make, _recording_train_fn(log), 3,
                                      rate=0.3, reset="init", seed=4,
                                      progress=False)
    w0 = _make(4).state_dict()
    assert len(log) == 4 and len(out["rounds"]) == 4
    for k, start in enumerate(log):
        masks = out["rounds"][k]["masks"]
        for name, value in w0.items():
            if name in masks:
                kept = masks[name] > 0
                assert torch.equal(start[name][kept], value[kept])
            else:                                # biases reset too
                assert torch.equal(start[name], value)


def test_reset_random_does_not_restore_w0():
    log = []
    iterative_magnitude_pruning(_make, _recording_train_fn(log), 2, rate=0.3,
                                reset="random", seed=4, progress=False)
    w0 = _make(4).state_dict()["fc1.weight"]
    assert torch.equal(log[0]["fc1.weight"], w0)
    for start in log[1:]:
        kept = start["fc1.weight"] != 0
        assert not torch.allclose(start["fc1.weight"][kept], w0[kept])


def test_reset_rewind_restores_step_k_weights():
    log, snapshots = [], []

    def train_fn(model, masks, on_step=None):
        def spy(net, step):
            snapshots.append((step, net.fc1.weight.detach().clone()))
            if on_step is not None:
                on_step(net, step)
        return _recording_train_fn(log)(model, masks, spy)

    out = iterative_magnitude_pruning(_make, train_fn, 2, rate=0.3,
                                      reset="rewind", rewind_step=2, seed=1,
                                      progress=False)
    w2 = dict(snapshots[:3])[2]
    for k in (1, 2):
        kept = out["rounds"][k]["masks"]["fc1.weight"] > 0
        assert torch.equal(log[k]["fc1.weight"][kept], w2[kept])
    w0 = _make(1).fc1.weight.detach()
    assert not torch.equal(log[1]["fc1.weight"][kept], w0[kept])


def test_imp_densities_follow_schedule():
    out = iterative_magnitude_pruning(_make, _recording_train_fn([]), 4,
                                      rate=0.2, seed=0, progress=False)
    for r in out["rounds"]:
        k = r["round"]
        assert abs(r["density"]["fc1.weight"] * 30 - 30 * 0.8 ** k) <= 0.5
        assert abs(r["density"]["fc2.weight"] * 18 - 18 * 0.9 ** k) <= 0.5
    assert out["rounds"][0]["global_density"] == 1.0
    assert out["config"]["output_rate"] == 0.1


@pytest.mark.parametrize("kwargs, match", [
    ({"reset": "bogus"}, "reset"),
    ({"rate": 1.2}, "rate"),
    ({"rounds": -1}, "rounds"),
    ({"reset": "init", "rewind_step": 3}, "rewind_step"),
    ({"reset": "rewind", "rewind_step": -2}, "rewind_step"),
    ({"reset": "rewind", "rewind_step": 50}, "rewind_step"),
    ({"seed": -3}, "seed"),
])
def test_imp_bad_arguments(kwargs, match):
    args = {"rounds": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        iterative_magnitude_pruning(_make, _recording_train_fn([]),
                                    progress=False, **args)


# --- training, early stopping ------------------------------------------------

def test_early_stopping_is_min_validation_loss():
    h = {"step": [5, 10, 15, 20], "val_loss": [2.0, 1.0, 1.0, 1.5],
         "test_accuracy": [0.1, 0.6, 0.7, 0.9]}
    assert early_stopping(h) == {"step": 10, "test_accuracy": 0.6,
                                 "val_loss": 1.0}
    with pytest.raises(ValueError, match="val_loss"):
        early_stopping({"step": [1], "test_accuracy": [0.5]})


def test_split_validation_is_disjoint_and_keeps_test(tiny_data):
    data = load_mnist1d(seed=0, n=300)
    split, (xv, yv) = split_validation(data, 40, seed=0)
    assert len(yv) == 40 and len(split.y_train) == len(data.y_train) - 40
    assert torch.equal(split.x_test, data.x_test)
    rows = {tuple(r.tolist()) for r in split.x_train}
    assert not any(tuple(r.tolist()) in rows for r in xv)
    with pytest.raises(ValueError, match="n_val"):
        split_validation(data, len(data.y_train))


def test_trainer_keeps_pruned_weights_zero_and_is_deterministic(tiny_data):
    split, val = tiny_data
    fn = make_trainer(split, val, steps=30, eval_every=10, lr=5e-3, seed=1)
    net = _make_mnist(0)
    masks = random_masks_like(magnitude_masks(net, 0.6), 0)
    h = fn(net, masks)
    assert h["step"] == [10, 20, 30]
    for n, w in prunable_weights(net).items():
        assert bool((w[masks[n] == 0] == 0).all())
    h2 = fn(_make_mnist(0), masks)
    assert h2["val_loss"] == h["val_loss"]
    assert h["early_stop"] == early_stopping(h)
    with pytest.raises(ValueError, match="eval_every"):
        make_trainer(split, val, steps=10, eval_every=20)


def _make_mnist(seed):
    torch.manual_seed(seed)
    return mlp([40, 16, 10])


def test_lottery_experiment_and_summary(tiny_data):
    split, val = tiny_data
    fn = make_trainer(split, val, steps=20, eval_every=10, lr=5e-3)
    out = lottery_experiment(_make_mnist, fn, [0, 1], rounds=2, rate=0.5,
                             progress=False)
    conds = {r["condition"] for r in out["records"]}
    assert conds == {"dense", "ticket", "reinit", "random mask", "synflow"}
    s = summarize(out["records"], "es_accuracy")
    assert list(s["ticket"]["round"]) == [0, 1, 2]
    assert np.all(s["ticket"]["min"] <= s["ticket"]["mean"])
    assert np.all(s["ticket"]["mean"] <= s["ticket"]["max"])
    assert s["reinit"]["remaining"][0] == pytest.approx(
        s["ticket"]["remaining"][1])
    # the synflow masks have the ticket's global density (within a weight)
    rows = [r for r in out["records"] if r["condition"] == "ticket"]
    assert rows[0]["remaining"] == 100.0
    # a retrained ticket from the same seed reproduces the IMP history
    again = retrain(_make_mnist, fn, out["masks"][0][1], 0)
    assert again["val_loss"] == out["histories"][0][1]["val_loss"]
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2)
    plot_paper_axes(axes, out["records"])
    fig = plt.figure()
    plot_round(fig, 1, masks=out["masks"][0], histories=out["histories"][0])
    with pytest.raises(ValueError, match="round"):
        plot_round(plt.figure(), 5, masks=out["masks"][0],
                   histories=out["histories"][0])
    with pytest.raises(ValueError, match="key"):
        summarize(out["records"], "nope")


# --- locality ----------------------------------------------------------------

def test_adjacent_pairs_and_locality_known_values():
    m = torch.tensor([[1., 1., 0., 1.], [1., 0., 1., 0.]])
    assert adjacent_pairs(m) == 1
    # expected: (3*2 + 2*1) / 4 = 2
    assert locality_ratio(m) == pytest.approx(0.5)
    full_row = torch.tensor([[1., 1., 1., 1.]])
    assert locality_ratio(full_row) == pytest.approx(1.0)
    assert math.isnan(locality_ratio(torch.eye(3)))
    with pytest.raises(ValueError, match="2-D"):
        adjacent_pairs(torch.ones(3))


def test_locality_ratio_is_one_on_average_for_random_rows():
    g = torch.Generator().manual_seed(0)
    ratios = []
    for _ in range(300):
        m = torch.zeros(20, 30)
        for row in m:
            row[torch.randperm(30, generator=g)[:6]] = 1.0
        ratios.append(locality_ratio(m))
    assert abs(np.mean(ratios) - 1.0) < 0.03
    banded = torch.zeros(20, 30)
    for h in range(20):
        banded[h, h:h + 6] = 1.0
    assert locality_ratio(banded) > 3


# --- genetic search ----------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), swaps=st.integers(0, 10))
def test_crossover_and_mutation_keep_density(seed, swaps):
    template = magnitude_masks(_net(), 0.7)
    a, b = random_masks_like(template, seed), random_masks_like(template,
                                                                seed + 1)
    g = torch.Generator().manual_seed(seed)
    child = crossover(a, b, g)
    mutant = mutate(child, swaps, g)
    for n in template:
        assert int(child[n].sum()) == int(template[n].sum())
        assert int(mutant[n].sum()) == int(template[n].sum())
        both = (a[n] > 0) & (b[n] > 0)
        assert bool((child[n][both] == 1).all())   # shared weights kept
        union = (a[n] > 0) | (b[n] > 0)
        assert bool((child[n][~union] == 0).all())
        assert int((mutant[n] != child[n]).sum()) == 2 * min(
            swaps, int(child[n].sum()), int((child[n] == 0).sum()))


def test_crossover_rejects_unequal_counts():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="same shape"):
        crossover({"w": torch.tensor([1., 0.])}, {"w": torch.tensor([1., 1.])},
                  g)


def test_genetic_search_runs_and_keeps_density(tiny_data):
    split, val = tiny_data
    fn = make_trainer(split, val, steps=10, eval_every=5, lr=5e-3)
    template = magnitude_masks(_make_mnist(0), 0.8)
    out = genetic_search(_make_mnist, fn, template, population=4,
                         generations=3, elite=2, swaps=5, seed=0,
                         progress=False)
    assert out["trainings"] == 4 + 2 * 2
    assert len(out["fitness"]) == 3
    # elitism: the best fitness never decreases
    best = [f[0] for f in out["fitness"]]
    assert best == sorted(best)
    assert out["best_fitness"] == best[-1]
    assert density(out["best"]) == density(template)
    with pytest.raises(ValueError, match="elite"):
        genetic_search(_make_mnist, fn, template, population=3, elite=3)
    one = genetic_search(_make_mnist, fn, template, population=2,
                         generations=2, elite=1, swaps=3, progress=False)
    assert one["trainings"] == 3 and density(one["best"]) == density(template)


# --- headline numbers and the full-mode runner -------------------------------

def _rec(seed, k, rem, cond, acc, step):
    return {"seed": seed, "round": k, "remaining": rem, "condition": cond,
            "es_step": step, "es_accuracy": acc, "final_accuracy": acc}


def test_headline_known_values():
    rows = []
    levels = [(0, 100.0), (1, 50.0), (2, 25.0), (3, 12.5)]
    ticket = {0: 0.6, 1: 0.65, 2: 0.61, 3: 0.5}
    reinit = {1: 0.62, 2: 0.55, 3: 0.4}
    for seed in (0, 1):
        for k, rem in levels:
            rows.append(_rec(seed, k, rem, "dense", 0.6, 100))
            rows.append(_rec(seed, k, rem, "ticket", ticket[k], 100 - 10 * k))
            if k:
                rows.append(_rec(seed, k, rem, "reinit", reinit[k], 100))
    h = headline(rows)
    assert list(h["remaining"]) == [50.0, 25.0, 12.5]
    assert np.allclose(h["es_ratio"], [0.9, 0.8, 0.7])
    assert h["ticket_ge_dense_down_to"] == 25.0
    assert h["reinit_below_dense_from"] == 25.0
    assert np.allclose(h["accuracy"]["reinit"], [0.62, 0.55, 0.4])
    bad = [r for r in rows if r["condition"] != "reinit"]
    with pytest.raises(ValueError, match="reinit"):
        headline(bad)


def test_mlp_factory_is_seeded():
    make = mlp_factory([5, 4, 2])
    assert torch.equal(make(3).fc1.weight, make(3).fc1.weight)
    assert not torch.equal(make(3).fc1.weight, make(4).fc1.weight)
    with pytest.raises(ValueError, match="seed"):
        make(-1)


def test_full_run_small_config_round_trips(tmp_path):
    from utils.results import load_results, save_results

    cfg = dict(FULL_CONFIG, n=300, n_val=40, steps=10, eval_every=5,
               rounds=1, seeds=[0, 1], ga_seeds=[0], ga_population=3,
               ga_generations=2, ga_elite=1, ga_steps=4, reset_seeds=[0],
               rewind_step=2)
    out = full_run(cfg, progress=False)
    assert {r["condition"] for r in out["records"]} == {
        "dense", "ticket", "reinit", "random mask", "synflow"}
    assert len(out["locality"]) == 2 and len(out["positions"]) == 2
    assert {r["reset"] for r in out["resets"]} == {"random", "rewind"}
    assert out["ga"][0]["trainings"] == 3 + 2
    save_results("lottery", out, command="test", seeds=[0, 1], root=tmp_path)
    back = load_results("lottery", root=tmp_path)["data"]
    assert summarize(back["records"])["ticket"]["mean"].shape == (2,)
