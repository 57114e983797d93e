"""Tests of utils.clipping: eq 14 (clip), eq 18 (decompose), eqs 19-20, the methods, the network versions."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from utils.clipping import (
    clip,
    clip_factors,
    clipped_backward_,
    dp_clipped_sgd,
    clipped_gd,
    clipped_igc,
    clipped_sgd,
    clipping_condition,
    decompose,
    huber_objective,
    ls_grads,
    ls_objective,
    network_clipping_condition,
    noise_for_privacy,
    outlier_regression,
    per_example_betas,
    plot_clipping_explorer,
    privacy_spent,
    train_clipped,
)
from utils.data import Split
from utils.models import mlp
from utils.per_example import per_example_grads

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
etas = st.floats(1e-3, 1e3, allow_nan=False)


def ce(output, target):
    return F.cross_entropy(output, target, reduction="none")


# ---------------------------------------------------------------- clip (eq 14)

def test_clip_known_values():
    assert np.allclose(clip(np.array([3.0, 4.0]), 1.0), [0.6, 0.8], rtol=0, atol=1e-15)
    assert np.array_equal(clip(np.array([0.3, 0.4]), 1.0), [0.3, 0.4])          # identity below eta
    assert np.array_equal(clip(np.zeros(3), 1.0), np.zeros(3))                  # zero stays zero, no NaN
    rows = clip(np.array([[3.0, 4.0], [0.0, 0.0], [6.0, 8.0]]), 5.0)
    assert np.allclose(rows, [[3.0, 4.0], [0.0, 0.0], [3.0, 4.0]], rtol=0, atol=1e-15)
    assert np.array_equal(clip(np.array([1e6, 0.0]), math.inf), [1e6, 0.0])      # inf: no clipping


def test_clip_torch_matches_numpy():
    g = np.random.default_rng(0).normal(size=(5, 4)) * 3
    g[2] = 0
    out = clip(torch.tensor(g), 1.5)
    assert isinstance(out, torch.Tensor)
    assert np.allclose(out.numpy(), clip(g, 1.5), rtol=0, atol=1e-14)
    assert not torch.isnan(out).any()


@pytest.mark.parametrize("eta", [0, -1.0, float("nan")])
def test_clip_rejects_bad_eta(eta):
    with pytest.raises(ValueError, match="eta"):
        clip(np.ones(2), eta)


def test_clip_rejects_bad_types_and_shapes():
    with pytest.raises(TypeError, match="eta"):
        clip(np.ones(2), "1")
    with pytest.raises(ValueError, match="g must"):
        clip(np.ones((2, 2, 2)), 1.0)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)), elements=finite), etas)
def test_clip_properties(g, eta):
    c = clip(g, eta)
    n_in, n_out = np.linalg.norm(g, axis=1), np.linalg.norm(c, axis=1)
    assert np.all(n_out <= n_in * (1 + 1e-12) + 1e-300)                           # never increases a norm
    assert np.all(n_out <= eta * (1 + 1e-12))                                     # at most eta
    assert np.allclose(n_out, np.minimum(n_in, eta), rtol=1e-12, atol=1e-300)     # ||C(g)|| = min(||g||, eta)
    small = n_in <= eta
    assert np.array_equal(c[small], g[small])                                     # identity below eta
    gamma = clip_factors(n_in, eta)
    assert np.allclose(c, gamma[:, None] * g, rtol=1e-12, atol=0)                 # C(g) = gamma g
    assert np.all((gamma > 0) & (gamma <= 1))


# ---------------------------------------------------------------- decompose (eq 18)

def test_decompose_known_values():
    beta, t, full = decompose(np.array([[2.0, 1.0], [0.0, -1.0]]))
    assert np.allclose(full, [1.0, 0.0]) and np.allclose(beta, [2.0, 0.0])
    assert np.allclose(t, [[0.0, 1.0], [0.0, -1.0]])


def test_decompose_rejects_zero_full_gradient():
    with pytest.raises(ValueError, match="full gradient"):
        decompose(np.array([[1.0, 2.0], [-1.0, -2.0]]))
    with pytest.raises(ValueError, match="per_example_grads"):
        decompose(np.ones(3))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 7), st.integers(1, 5)), elements=st.floats(-10, 10)))
def test_decompose_identities(G):
    full = G.mean(0)
    if full @ full < 1e-6:
        with pytest.raises(ValueError) if full @ full == 0 else _null():
            decompose(G)
        return
    beta, t, full2 = decompose(G)
    m = G.shape[0]
    scale = 1 + np.abs(G).max() / math.sqrt(full @ full)
    assert abs(beta.sum() - m) <= 1e-10 * m * scale                       # sum beta = m
    assert np.abs(t.sum(0)).max() <= 1e-10 * m * (1 + np.abs(G).max()) * scale   # sum t = 0
    assert np.abs(t @ full).max() <= 1e-10 * (1 + np.abs(G).max()) * math.sqrt(full @ full) * scale
    assert np.allclose(beta[:, None] * full + t, G, rtol=0, atol=1e-12 * (1 + np.abs(G).max()))


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_decompose_float64_exactness_random():
    rng = np.random.default_rng(1)
    for m, n in [(2, 3), (10, 5), (50, 20)]:
        G = rng.normal(size=(m, n)) + 0.5
        beta, t, full = decompose(G)
        assert abs(beta.sum() - m) < 1e-12 * m
        assert np.abs(t.sum(0)).max() < 1e-12 * m


# ---------------------------------------------------------------- clipping_condition (eqs 19-20)

def test_condition_known_values_and_eq19():
    gamma, beta, S = clipping_condition(np.array([[-4.0], [2.0]]), 1.0)
    assert np.allclose(gamma, [0.25, 0.5]) and np.allclose(beta, [4.0, -2.0]) and S == 0.0
    # the exercise of the chapter: three vectors in the plane
    G = np.array([[3.0, 0.0], [0.0, 1.0], [-1.0, 2.0]])
    gamma, beta, S = clipping_condition(G, 1.0)
    assert np.allclose(beta, [18 / 13, 9 / 13, 12 / 13], rtol=0, atol=1e-15)
    assert abs(S - (15 / 13 + 12 / (13 * math.sqrt(5)))) < 1e-14


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 4)), elements=st.floats(-10, 10)), etas)
def test_eq19_property(G, eta):
    full = G.mean(0)
    if full @ full < 1e-6:
        return
    gamma, beta, S = clipping_condition(G, eta)
    lhs = clip(G, eta).sum(0) @ full                                   # <sum C(g_i), grad f>
    assert abs(lhs - S * (full @ full)) <= 1e-10 * (1 + np.abs(G).max()) ** 2 * G.shape[0]
    assert np.all(gamma <= 1)


def test_no_clipping_gives_S_equal_m():
    G = np.random.default_rng(2).normal(size=(8, 3)) + 1
    _, _, S = clipping_condition(G, math.inf)
    assert abs(S - 8) < 1e-12


def test_condition_torch_input():
    G = torch.tensor(np.random.default_rng(3).normal(size=(4, 3)) + 1)
    gamma, beta, S = clipping_condition(G, 0.5)
    g2, b2, S2 = clipping_condition(G.numpy(), 0.5)
    assert np.allclose(gamma.numpy(), g2) and np.allclose(beta.numpy(), b2) and abs(S - S2) < 1e-12


# ---------------------------------------------------------------- methods (eqs 15, 16)

A = np.array([-1.0, -1.0, 10.0])


def grad_i(i, x):
    return x - A[i]


def test_sgd_and_igc_known_values():
    a = [-1.0, 1.0]
    assert clipped_sgd(lambda i, x: x - a[i], [5.0], m=2, eta=1.0, lr=0.5, steps=2).ravel().tolist() == [5.0, 4.5, 4.0]
    assert clipped_igc(lambda i, x: x - a[i], [5.0], m=2, eta=1.0, lr=0.5, epochs=1).ravel().tolist() == [5.0, 4.0]
    inner = clipped_igc(lambda i, x: x - a[i], [5.0], m=2, eta=1.0, lr=0.5, epochs=2, inner=True)
    assert inner.shape == (5, 1)


def test_unclipped_igc_and_gd_converge_to_minimiser():
    x_star = A.mean()
    run = clipped_gd(lambda x: x[None, :] - A[:, None], [0.0], eta=math.inf, lr=0.5, steps=200)
    assert abs(run.x[-1, 0] - x_star) < 1e-10
    assert np.allclose(run.S[~np.isnan(run.S)], 3.0, atol=1e-9)                  # S = m without clipping
    igc = clipped_igc(grad_i, [0.0], 3, math.inf, 1e-3, epochs=3000)
    assert abs(igc[-1, 0] - x_star) < 1e-2                                        # O(lr) neighbourhood


def test_clipped_methods_are_biased_on_asymmetric_example():
    run = clipped_gd(lambda x: x[None, :] - A[:, None], [A.mean() - 0.01], eta=1.0, lr=0.05, steps=1000)
    assert abs(run.x[-1, 0] + 0.5) < 1e-6                                         # fixed point -1/2, not 8/3
    f = 0.5 * ((run.x[:, :1] - A[None, :]) ** 2).mean(1)
    assert f[1] > f[0] and run.S[0] < 0                                           # f increases; S < 0
    igc = clipped_igc(grad_i, [A.mean()], 3, 1.0, 0.01, epochs=1000)
    assert abs(igc[-1, 0] + 0.5) < 0.05


def test_symmetric_fixed_points():
    a = np.array([-3.0, 3.0])
    for x0 in [-1.5, 0.3, 2.0]:
        run = clipped_gd(lambda x: x[None, :] - a[:, None], [x0], eta=1.0, lr=0.1, steps=20)
        assert np.allclose(run.x, x0, atol=1e-15)
        assert abs(run.S[1]) < 1e-12 or np.isnan(run.S[1])


def test_sgd_is_reproducible():
    s1 = clipped_sgd(grad_i, [1.0], 3, 1.0, 0.1, 50, seed=3)
    s2 = clipped_sgd(grad_i, [1.0], 3, 1.0, 0.1, 50, seed=3)
    assert np.array_equal(s1, s2)


def test_methods_reject_bad_input():
    with pytest.raises(ValueError, match="eta"):
        clipped_sgd(grad_i, [0.0], 3, 0.0, 0.1, 5)
    with pytest.raises(ValueError, match="lr"):
        clipped_igc(grad_i, [0.0], 3, 1.0, -0.1, 5)
    with pytest.raises(ValueError, match="m must"):
        clipped_sgd(grad_i, [0.0], 0, 1.0, 0.1, 5)
    with pytest.raises(ValueError, match="x0"):
        clipped_gd(lambda x: x[None, :], [np.nan], 1.0, 0.1, 5)
    with pytest.raises(ValueError, match="grad_i"):
        clipped_sgd(lambda i, x: np.ones(3), [0.0], 3, 1.0, 0.1, 5)
    with pytest.raises(TypeError, match="grads"):
        clipped_gd(None, [0.0], 1.0, 0.1, 5)


# ---------------------------------------------------------------- least squares = Huber

def test_clipped_ls_gradient_is_huber_gradient():
    X, y, _, _ = outlier_regression(n=50, outlier_fraction=0.2, seed=4)
    w, eta, h = np.array([0.3, -0.7]), 1.3, 1e-6
    clipped_mean = clip(ls_grads(X, y)(w), eta).mean(0)
    numeric = np.array([(huber_objective(w + h * e, X, y, eta) - huber_objective(w - h * e, X, y, eta)) / (2 * h)
                        for e in np.eye(2)])
    assert np.allclose(clipped_mean, numeric, rtol=0, atol=1e-7)
    assert abs(huber_objective(w, X, y, math.inf) - ls_objective(w, X, y)) < 1e-12


def test_outlier_regression_shapes_and_errors():
    X, y, w, out = outlier_regression(n=40, outlier_fraction=0.25, kind="one-sided", seed=0)
    assert X.shape == (40, 2) and y.shape == (40,) and out.sum() == 10
    with pytest.raises(ValueError, match="outlier_fraction"):
        outlier_regression(outlier_fraction=1.0)
    with pytest.raises(ValueError, match="kind"):
        outlier_regression(kind="left")


# ---------------------------------------------------------------- networks

def _net_batch(seed=0):
    torch.manual_seed(seed)
    model = mlp([6, 5, 4, 3]).double()
    x = torch.randn(9, 6, dtype=torch.float64)
    x[3] = 0.0                                             # a zero example
    x[5] = x[4]                                            # a duplicate
    y = torch.randint(0, 3, (9,))
    return model, x, y


def _materialised(model, x, y):
    g = per_example_grads(model, ce, x, y)
    return torch.cat([v.reshape(x.shape[0], -1) for v in g.values()], dim=1).numpy()


def test_betas_match_materialised():
    model, x, y = _net_batch()
    G = _materialised(model, x, y)
    beta_ref, _, _ = decompose(G)
    beta = per_example_betas(model, ce, x, y).numpy()
    assert np.abs(beta - beta_ref).max() < 1e-12
    assert abs(beta.sum() - 9) < 1e-12


def test_network_condition_and_clipped_step_match_materialised():
    model, x, y = _net_batch(1)
    G = _materialised(model, x, y)
    eta = float(np.median(np.linalg.norm(G, axis=1)))
    g_ref, b_ref, S_ref = clipping_condition(G, eta)
    gamma, beta, S, norms = network_clipping_condition(model, ce, x, y, eta)
    assert np.abs(gamma.numpy() - g_ref).max() < 1e-12 and abs(S - S_ref) < 1e-12
    assert np.abs(norms.numpy() - np.linalg.norm(G, axis=1)).max() < 1e-12
    stats = clipped_backward_(model, ce, x, y, eta)
    step = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()
    assert np.abs(step - clip(G, eta).mean(0)).max() < 1e-12
    assert abs(stats["S"] - S_ref) < 1e-12 and 0 < stats["frac_clipped"] < 1


def test_betas_leave_grad_untouched_and_frozen_layers():
    model, x, y = _net_batch(2)
    model.fc1.bias.requires_grad_(False)
    per_example_betas(model, ce, x, y)
    assert all(p.grad is None for p in model.parameters())
    G = _materialised(model, x, y)
    assert np.abs(per_example_betas(model, ce, x, y).numpy() - decompose(G)[0]).max() < 1e-12


def test_network_errors():
    model, x, y = _net_batch()
    with pytest.raises(ValueError, match="per-example losses"):
        per_example_betas(model, lambda o, t: F.cross_entropy(o, t), x, y)
    with pytest.raises(ValueError, match="eta"):
        network_clipping_condition(model, ce, x, y, -1.0)
    with pytest.raises(ValueError, match="x must"):
        per_example_betas(model, ce, x[0], y)
    with pytest.raises(ValueError):
        per_example_betas(torch.nn.Sequential(torch.nn.Conv1d(1, 1, 2)), ce, x, y)


def test_train_clipped_runs_and_records():
    torch.manual_seed(0)
    x = torch.randn(80, 6)
    y = (x[:, 0] > 0).long()
    data = Split(x[:60], y[:60], x[60:], y[60:], "toy")
    hist = train_clipped(mlp([6, 8, 2]), data, eta=0.1, steps=20, batch_size=16, lr=0.1, eval_every=10,
                         probe_size=32, progress=False)
    assert hist["step"] == [0, 10, 20] and len(hist["batch_S_over_B"]) == 20
    assert all(-10 < s <= 1 + 1e-6 for s in hist["S_over_m"])
    with pytest.raises(ValueError, match="steps"):
        train_clipped(mlp([6, 8, 2]), data, eta=1.0, steps=0)


def _flat_grad(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()


def test_step_split_into_length_and_angle():
    """S / B = (||d|| / ||grad f||) cos phi (eq-clip-S-split), each factor against materialised rows."""
    model, x, y = _net_batch(3)
    G = _materialised(model, x, y)
    eta = float(np.quantile(np.linalg.norm(G, axis=1), 0.3))
    stats = clipped_backward_(model, ce, x, y, eta)
    d, g = clip(G, eta).mean(0), G.mean(0)
    assert np.abs(_flat_grad(model) - d).max() < 1e-12
    assert abs(stats["step_ratio"] - np.linalg.norm(d) / np.linalg.norm(g)) < 1e-12
    cos = d @ g / (np.linalg.norm(d) * np.linalg.norm(g))
    assert abs(stats["cos_phi"] - cos) < 1e-12 and stats["step_ratio"] < 1
    assert abs(stats["S_over_B"] - stats["step_ratio"] * stats["cos_phi"]) < 1e-12
    assert abs(stats["S"] - clipping_condition(G, eta)[2]) < 1e-12


def test_match_length_keeps_direction_and_takes_sgd_length():
    model, x, y = _net_batch(4)
    G = _materialised(model, x, y)
    eta = float(np.quantile(np.linalg.norm(G, axis=1), 0.3))
    clipped_backward_(model, ce, x, y, eta, match_length=True)
    step, d = _flat_grad(model), clip(G, eta).mean(0)
    assert abs(np.linalg.norm(step) - np.linalg.norm(G.mean(0))) < 1e-12
    assert np.abs(step / np.linalg.norm(step) - d / np.linalg.norm(d)).max() < 1e-12
    clipped_backward_(model, ce, x, y, math.inf, match_length=True)         # nothing clipped: plain SGD
    assert np.abs(_flat_grad(model) - G.mean(0)).max() < 1e-12


def test_noise_is_sigma_eta_xi_over_normalizer():
    model, x, y = _net_batch(5)
    G = _materialised(model, x, y)
    eta, sigma, norm_ = 0.5, 1.3, 20.0
    clipped_backward_(model, ce, x, y, eta, noise_multiplier=sigma, normalizer=norm_,
                      generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    xi = torch.cat([torch.randn(p.shape, generator=gen, dtype=p.dtype).reshape(-1)
                    for p in model.parameters()]).numpy()
    expected = (clip(G, eta).sum(0) + sigma * eta * xi) / norm_
    assert np.abs(_flat_grad(model) - expected).max() < 1e-12
    with pytest.raises(ValueError, match="finite eta"):
        clipped_backward_(model, ce, x, y, math.inf, noise_multiplier=1.0)
    with pytest.raises(ValueError, match="match_length"):
        clipped_backward_(model, ce, x, y, 1.0, noise_multiplier=1.0, match_length=True)
    with pytest.raises(ValueError, match="noise_multiplier"):
        clipped_backward_(model, ce, x, y, 1.0, noise_multiplier=-1.0)
    with pytest.raises(ValueError, match="normalizer"):
        clipped_backward_(model, ce, x, y, 1.0, normalizer=0.0)


def test_privacy_spent_matches_the_analytic_gaussian_mechanism():
    """q = 1: T Gaussian steps are one Gaussian mechanism with sigma / sqrt(T) (Balle & Wang 2018)."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    sigma, steps, delta = 2.0, 16, 1e-5
    s = sigma / math.sqrt(steps)

    def delta_of(eps):
        return norm.cdf(-eps * s + 0.5 / s) - math.exp(eps) * norm.cdf(-eps * s - 0.5 / s) - delta

    exact = brentq(delta_of, 1e-6, 100.0)
    prv = privacy_spent(sigma, 1.0, steps, delta, accountant="prv")
    rdp = privacy_spent(sigma, 1.0, steps, delta, accountant="rdp")
    assert abs(prv - exact) < 0.02 * exact                 # PRV is numerically exact
    assert exact - 1e-6 <= rdp < 1.5 * exact               # RDP is an upper bound, not far off


def test_privacy_spent_monotone_and_noise_for_privacy_inverts_it():
    q, steps, delta = 0.05, 300, 1e-5
    eps = [privacy_spent(s, q, steps, delta) for s in (0.8, 1.0, 1.5)]
    assert eps[0] > eps[1] > eps[2] > 0
    assert privacy_spent(1.0, q, 600, delta) > eps[1]
    sigma = noise_for_privacy(2.0, delta, q, steps)
    assert 1.9 < privacy_spent(sigma, q, steps, delta) <= 2.0
    with pytest.raises(ValueError, match="sample_rate"):
        privacy_spent(1.0, 1.5, steps, delta)
    with pytest.raises(ValueError, match="delta"):
        privacy_spent(1.0, q, steps, 1.0)
    with pytest.raises(ValueError, match="accountant"):
        privacy_spent(1.0, q, steps, delta, accountant="moments")


def test_dp_clipped_sgd_without_noise_and_sampling_is_clipped_gd():
    X, y, _, _ = outlier_regression(n=50, seed=0)
    ref = clipped_gd(ls_grads(X, y), [0.0, 0.0], eta=1.0, lr=0.3, steps=20).x
    out = dp_clipped_sgd(ls_grads(X, y), [0.0, 0.0], 1.0, 0.3, 20, noise_multiplier=0.0, sample_rate=1.0)
    assert np.abs(out - ref).max() < 1e-12
    a = dp_clipped_sgd(ls_grads(X, y), [0.0, 0.0], 1.0, 0.3, 20, noise_multiplier=1.0, sample_rate=0.2, seed=3)
    b = dp_clipped_sgd(ls_grads(X, y), [0.0, 0.0], 1.0, 0.3, 20, noise_multiplier=1.0, sample_rate=0.2, seed=3)
    assert np.array_equal(a, b) and not np.allclose(a, out)
    with pytest.raises(ValueError, match="finite eta"):
        dp_clipped_sgd(ls_grads(X, y), [0.0, 0.0], math.inf, 0.3, 5, noise_multiplier=1.0, sample_rate=0.2)
    with pytest.raises(ValueError, match="sample_rate"):
        dp_clipped_sgd(ls_grads(X, y), [0.0, 0.0], 1.0, 0.3, 5, noise_multiplier=1.0, sample_rate=0.0)


def test_train_clipped_poisson_and_noise():
    torch.manual_seed(0)
    x = torch.randn(200, 6)
    y = (x[:, 0] > 0).long()
    data = Split(x[:150], y[:150], x[150:], y[150:], "toy")
    kw = dict(eta=0.5, steps=40, lr=0.1, eval_every=20, probe_size=32, progress=False,
              noise_multiplier=1.0, sample_rate=0.1)
    torch.manual_seed(0)
    h1 = train_clipped(mlp([6, 8, 2]), data, seed=1, **kw)
    sizes = np.array(h1["batch_size"])
    assert len(set(sizes.tolist())) > 3 and 10 < sizes.mean() < 20          # Poisson, mean q m = 15
    torch.manual_seed(0)
    h2 = train_clipped(mlp([6, 8, 2]), data, seed=1, **kw)
    assert h1["train_loss"] == h2["train_loss"]                              # reproducible under the seed
    assert all(abs(s - r * c) < 1e-6 for s, r, c in zip(h1["S_over_m"], h1["step_ratio"], h1["cos_phi"]))


def test_explorer_panel_draws():
    fig = plt.figure()
    out = plot_clipping_explorer(fig, eta=1.0, outlier_fraction=0.1, steps=50)
    assert len(fig.axes) == 2 and out["S_over_m"].shape == (51,)
    plt.close(fig)
