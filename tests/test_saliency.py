"""Tests of utils.saliency: synaptic saliency, Theorems 1 and 2, their failure cases, the pruning scores."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from utils.saliency import (
    bias_totals,
    conservation_report,
    cut_edges,
    cut_saliency,
    homogeneity_defect,
    input_output_saliency,
    layer_totals,
    loglog_slope,
    neuron_flows,
    neuron_flows_from_scores,
    plot_conservation,
    saliency_mlp,
    synaptic_saliency,
)

from utils.pruning import grasp_scores, magnitude_scores, snip_scores, synflow_scores  # the one set of scorers

F64 = torch.float64


def close(a, b, tol=1e-10):
    """|a - b| <= tol * max(1, |a|, |b|): the relative float64 tolerance used throughout."""
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def _net(sizes, activation="relu", bias=False, seed=0):
    torch.manual_seed(seed)
    model = saliency_mlp(sizes, activation, bias=bias)
    if bias:
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim == 1:
                    p.normal_(0.0, 0.5)
    return model


def _batch(n_in, seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n_in, generator=g, dtype=F64)


OBJECTIVES = {
    "sum": lambda y: y.sum(),
    "square": lambda y: 0.5 * (y**2).sum(),
    "cross_entropy": lambda y: F.cross_entropy(y, torch.arange(y.shape[0]) % y.shape[1]),
}


# ---------------------------------------------------------------- known values


def test_saliency_of_a_two_weight_linear_chain_by_hand():
    # y = w2 * w1 * x, R = y: dR/dw1 * w1 = w2 w1 x = dR/dw2 * w2 = y
    model = saliency_mlp([1, 1, 1], "identity")
    with torch.no_grad():
        model.fc1.weight.fill_(3.0)
        model.fc2.weight.fill_(-2.0)
    S = synaptic_saliency(model, lambda y: y.sum(), torch.tensor([[5.0]], dtype=F64))
    assert S["fc1.weight"].item() == -30.0 and S["fc2.weight"].item() == -30.0


def test_saliency_matches_autograd_by_hand_and_sums_over_the_batch():
    model = _net([3, 4, 2])
    x = _batch(3)
    S = synaptic_saliency(model, lambda y: y.sum(), x)
    per_example = [synaptic_saliency(model, lambda y: y.sum(), x[i : i + 1]) for i in range(len(x))]
    for name, s in S.items():
        assert torch.allclose(s, sum(p[name] for p in per_example), rtol=0, atol=1e-12)
    R = model(x).sum()
    (g,) = torch.autograd.grad(R, model.fc1.weight)
    assert torch.allclose(S["fc1.weight"], g * model.fc1.weight.detach(), rtol=0, atol=0)


def test_synflow_scores_known_values_and_eq7():
    model = saliency_mlp([2, 2, 1])
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 1.0]]))
        model.fc2.weight.copy_(torch.tensor([[-3.0, 2.0]]))
    S = synflow_scores(model)
    # eq 7: [1^T |W2|]_i |W1_ij| [1]_j  and  |W2_1j| [|W1| 1]_j
    assert torch.allclose(S["fc1.weight"], torch.tensor([[3.0, 6.0], [1.0, 2.0]], dtype=F64))
    assert torch.allclose(S["fc2.weight"], torch.tensor([[9.0, 3.0]], dtype=F64))
    totals = layer_totals(S)
    assert totals == {"fc1.weight": 12.0, "fc2.weight": 12.0}  # = R_SF = 1^T |W2| |W1| 1


def test_layer_and_bias_totals_pick_the_right_entries():
    scores = {"fc1.weight": torch.ones(2, 3), "fc1.bias": torch.full((2,), 2.0), "fc2.weight": -torch.ones(1, 2)}
    assert layer_totals(scores) == {"fc1.weight": 6.0, "fc2.weight": -2.0}
    assert bias_totals(scores) == {"fc1.bias": 4.0}


def test_cut_edges_and_cut_saliency_endpoints():
    assert cut_edges([2, 2, 1], 1, []) == [(1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)]
    assert cut_edges([2, 2, 1], 1, [0, 1]) == [(2, 0, 0), (2, 0, 1)]
    model = _net([3, 4, 2])
    S = synaptic_saliency(model, lambda y: y.sum(), _batch(3))
    totals = layer_totals(S)
    assert close(cut_saliency(model, S, 1, []), totals["fc1.weight"])
    assert close(cut_saliency(model, S, 1, range(4)), totals["fc2.weight"])


# ---------------------------------------------------------------- Theorem 1 and 2 (property-based)

widths = st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=4)


@settings(max_examples=25, deadline=None)
@given(hidden=widths, n_in=st.integers(1, 6), n_out=st.integers(1, 4), seed=st.integers(0, 10_000),
       activation=st.sampled_from(["relu", "leaky_relu", "identity"]), objective=st.sampled_from(sorted(OBJECTIVES)))
def test_theorems_1_and_2_on_random_homogeneous_networks(hidden, n_in, n_out, seed, activation, objective):
    model = _net([n_in, *hidden, n_out], activation, seed=seed)
    x = _batch(n_in, seed=seed)
    R = OBJECTIVES[objective]
    S = synaptic_saliency(model, R, x)
    for flow in neuron_flows_from_scores(model, S):  # Theorem 1
        for a, b in zip(flow.incoming.tolist(), flow.outgoing.tolist()):
            assert close(a, b)
    lhs, rhs = input_output_saliency(model, R, x)  # Theorem 2
    assert close(lhs, rhs)
    for total in layer_totals(S).values():
        assert close(total, lhs)
    for layer in range(1, len(hidden) + 1):  # every exact cut, not only whole layers
        J = [j for j in range(hidden[layer - 1]) if (j + seed) % 2 == 0]
        assert close(cut_saliency(model, S, layer, J), lhs)


@settings(max_examples=15, deadline=None)
@given(hidden=widths, seed=st.integers(0, 10_000))
def test_theorem_1_holds_with_biases_and_theorem_2_shifts_by_the_bias_saliency(hidden, seed):
    model = _net([4, *hidden, 3], "relu", bias=True, seed=seed)
    x = _batch(4, seed=seed)
    R = OBJECTIVES["square"]
    S = synaptic_saliency(model, R, x)
    for flow in neuron_flows_from_scores(model, S):
        assert all(close(a, b) for a, b in zip(flow.incoming.tolist(), flow.outgoing.tolist()))
    w = list(layer_totals(S).values())
    b = list(bias_totals(S).values())
    for l in range(len(w) - 1):  # S(W^(l+1)) = S(W^(l)) + S(b^(l))
        assert close(w[l + 1], w[l] + b[l])
    lhs, rhs = input_output_saliency(model, R, x)
    assert close(w[0], lhs) and close(rhs, lhs + sum(b))


def test_biases_do_break_theorem_2():
    model = _net([4, 6, 5, 3], "relu", bias=True, seed=1)
    S = synaptic_saliency(model, OBJECTIVES["sum"], _batch(4))
    w = list(layer_totals(S).values())
    assert max(w) - min(w) > 1e-2


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus", "gelu"])
def test_non_homogeneous_activations_break_theorem_1_by_exactly_the_defect(activation):
    model = _net([4, 6, 5, 3], activation, seed=2)
    x = _batch(4)
    R = OBJECTIVES["sum"]
    flows = neuron_flows(model, R, x)
    assert max(float(f.gap.abs().max()) for f in flows) > 1e-3  # the law fails ...
    for flow, defect in zip(flows, homogeneity_defect(model, R, x)):  # ... by the amount the proof predicts
        assert torch.allclose(flow.gap, defect, rtol=0, atol=1e-10)
    totals = list(layer_totals(synaptic_saliency(model, R, x)).values())
    assert max(totals) - min(totals) > 1e-3


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "identity", "tanh", "softplus"])
@pytest.mark.parametrize("bias", [False, True])
def test_conservation_report(activation, bias):
    r = conservation_report(_net([5, 7, 6, 3], activation, bias=bias, seed=7), OBJECTIVES["square"], _batch(5))
    assert r["defect_error"] < 1e-12
    homogeneous = activation in ("relu", "leaky_relu", "identity")
    assert (r["neuron_gap"] < 1e-12) == homogeneous
    assert (r["layer_spread"] < 1e-12) == (homogeneous and not bias)
    assert (r["io_gap"] < 1e-12) == (homogeneous and not bias)
    if bias:
        assert r["neuron_gap_without_bias"] > 1e-3
        assert (r["bias_shift_error"] < 1e-12) == homogeneous
    else:
        assert math.isnan(r["neuron_gap_without_bias"]) and math.isnan(r["bias_shift_error"])


def test_homogeneity_defect_vanishes_for_relu():
    model = _net([4, 6, 5, 3], "relu", seed=3)
    for d in homogeneity_defect(model, OBJECTIVES["sum"], _batch(4)):
        assert d.abs().max() < 1e-12


# ---------------------------------------------------------------- which scores are conserved


def test_synflow_is_positive_and_conserved_magnitude_snip_grasp_are_not():
    model = _net([6, 8, 7, 3], "relu", seed=4)
    x = _batch(6)
    R = OBJECTIVES["cross_entropy"]
    syn = synflow_scores(model)
    assert all((s >= 0).all() for s in syn.values())
    totals = list(layer_totals(syn).values())
    assert all(close(t, totals[0]) for t in totals)

    def worst_gap(scores):
        flows = neuron_flows_from_scores(model, scores)
        return max(float((f.gap.abs() / f.incoming.abs().max()).max()) for f in flows)

    assert worst_gap(syn) < 1e-12
    assert worst_gap(magnitude_scores(model)) > 1e-2
    labels = torch.arange(x.shape[0]) % 3                  # the labels of OBJECTIVES["cross_entropy"]
    assert worst_gap(snip_scores(model, (x, labels))) > 1e-2
    assert worst_gap(grasp_scores(model, (x, labels))) > 1e-2
    assert worst_gap(synaptic_saliency(model, R, x)) < 1e-12     # the signed SNIP score is conserved


def test_snip_is_the_absolute_saliency_and_grasp_the_hessian_gradient_product():
    model = _net([3, 4, 2], "tanh", seed=5)
    x = _batch(3)
    R = OBJECTIVES["square"]
    S = synaptic_saliency(model, R, x)
    square = lambda out, _y: R(out)                        # noqa: E731  (loss_fn(logits, y))
    data = (x, torch.zeros(x.shape[0], dtype=torch.long))
    assert torch.equal(snip_scores(model, data, loss_fn=square)["fc1.weight"], S["fc1.weight"].abs())
    params = list(model.parameters())
    flat = torch.cat([p.detach().flatten() for p in params])

    def loss(v):
        chunks, i = [], 0
        for p in params:
            chunks.append(v[i : i + p.numel()].view_as(p))
            i += p.numel()
        y = torch.func.functional_call(model, dict(zip([n for n, _ in model.named_parameters()], chunks)), (x,))
        return R(y)

    H = torch.autograd.functional.hessian(loss, flat)
    g = torch.autograd.functional.jacobian(loss, flat)
    expected = (H @ g) * flat                              # GraSP as kept: (Hg) * theta, T = 1 here
    got = grasp_scores(model, data, loss_fn=square, temperature=1.0)
    assert torch.allclose(got["fc1.weight"].flatten(), expected[: params[0].numel()], rtol=1e-9, atol=1e-12)


def test_loglog_slope():
    assert math.isclose(loglog_slope([1, 10, 100], [3.0, 0.3, 0.03]), -1.0, abs_tol=1e-12)
    assert math.isclose(loglog_slope([1, 4, 16], [1.0, 2.0, 4.0]), 0.5, abs_tol=1e-12)


def test_layer_size_law_on_uneven_widths():
    model = _net([16, 2, 64, 4, 3], "relu", seed=6)
    scores = synflow_scores(model)
    counts = [s.numel() for s in scores.values()]
    means = [float(s.mean()) for s in scores.values()]
    assert math.isclose(loglog_slope(counts, means), -1.0, abs_tol=1e-9)


def test_plot_conservation_draws_and_reports():
    import matplotlib.pyplot as plt

    fig = plt.figure()
    relu = plot_conservation(fig, "relu", bias=False, depth=2, width=5)
    assert relu["max_neuron_gap"] < 1e-12 and relu["layer_spread"] < 1e-12
    tanh = plot_conservation(plt.figure(), "tanh", bias=False, depth=2, width=5)
    assert tanh["max_neuron_gap"] > 1e-4
    assert len(fig.axes) == 2


# ---------------------------------------------------------------- invalid input


def test_invalid_input():
    model = _net([3, 4, 2])
    x = _batch(3)
    with pytest.raises(TypeError, match="objective"):
        synaptic_saliency(model, "sum", x)
    with pytest.raises(ValueError, match="objective"):
        synaptic_saliency(model, lambda y: y, x)  # not a scalar
    with pytest.raises(TypeError, match="x must"):
        synaptic_saliency(model, OBJECTIVES["sum"], [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="x must"):
        synaptic_saliency(model, OBJECTIVES["sum"], torch.zeros(3, dtype=F64))
    with pytest.raises(TypeError, match="model"):
        synaptic_saliency("net", OBJECTIVES["sum"], x)
    with pytest.raises(ValueError, match="x has dtype"):
        synaptic_saliency(model, OBJECTIVES["sum"], x.float())
    with pytest.raises(ValueError, match="x has dtype"):
        input_output_saliency(model, OBJECTIVES["sum"], x.float())
    with pytest.raises(ValueError, match="model"):
        neuron_flows(nn.Sequential(nn.Linear(3, 4), nn.Dropout(), nn.Linear(4, 2)), OBJECTIVES["sum"], x.float())
    with pytest.raises(ValueError, match="model"):
        synflow_scores(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="scores"):
        neuron_flows_from_scores(model, {"fc1.weight": torch.zeros(4, 3)})
    with pytest.raises(ValueError, match="layer"):
        cut_saliency(model, synaptic_saliency(model, OBJECTIVES["sum"], x), 2, [])
    with pytest.raises(ValueError, match="neurons"):
        cut_saliency(model, synaptic_saliency(model, OBJECTIVES["sum"], x), 1, [4])
    with pytest.raises(ValueError, match="activation"):
        saliency_mlp([3, 2], "swish")
    with pytest.raises(ValueError, match="sizes"):
        loglog_slope([1, 2], [1.0, -1.0])
    with pytest.raises(ValueError, match="depth"):
        import matplotlib.pyplot as plt

        plot_conservation(plt.figure(), depth=0)


# ---------------------------------------------------------------- the data behind the chapter's tables and figures


def test_conservation_report_exact_values_on_a_one_neuron_tanh_chain():
    # x = 1 -> w1 = 1 -> tanh -> w2 = 2, R = y: S_in = w2 tanh'(1), S_out = w2 tanh(1), no biases
    model = saliency_mlp([1, 1, 1], "tanh")
    with torch.no_grad():
        model.fc1.weight.fill_(1.0)
        model.fc2.weight.fill_(2.0)
    r = conservation_report(model, OBJECTIVES["sum"], torch.ones(1, 1, dtype=F64))
    s_in, s_out = 2 * (1 - math.tanh(1) ** 2), 2 * math.tanh(1)
    assert r["neuron_gap"] == pytest.approx(abs(s_in - s_out) / s_in, rel=1e-12)
    assert r["layer_spread"] == pytest.approx((s_out - s_in) / s_out, rel=1e-12)
    assert r["io_gap"] == pytest.approx((s_out - s_in) / s_out, rel=1e-12)   # <dR/dx, x> = S_in, <dR/dy, y> = S_out
    assert r["defect_error"] < 1e-15
    assert math.isnan(r["bias_shift_error"]) and math.isnan(r["neuron_gap_without_bias"])


def test_layer_size_law_figure_reports_the_fitted_slopes():
    import matplotlib.pyplot as plt

    from utils.saliency import plot_layer_size_law

    fig, ax = plt.subplots()
    plot_layer_size_law(ax, [10, 100, 1000], {"conserved": [5.0, 0.5, 0.05], "flat": [1.0, 1.0, 1.0]})
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["conserved (slope -1.00)", "flat (slope +0.00)", "slope $-1$"]
    assert list(ax.lines[0].get_ydata()) == [5.0, 0.5, 0.05]
