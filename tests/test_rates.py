"""Tests of utils.rates: closed forms, identities, round trips, invalid input, properties, a QuantLib smoke test."""

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils import rates
from utils.rates import (bond_price, compounded_growth, forward_rate, growth_factor, money_market, to_compounded,
                         to_continuous, zcb_price, zcb_yield)

rate = st.floats(-0.2, 0.5, allow_nan=False)
freq = st.sampled_from([1, 2, 4, 12, 52, 365, 0.5, 3.7])
horizon = st.floats(0.0, 50.0, allow_nan=False)


# ---------------------------------------------------------------------------------- closed forms
def test_known_values():
    assert growth_factor(0.05, 2.0) == pytest.approx(math.exp(0.1), rel=1e-15)
    assert compounded_growth(0.10, 2, 1.0) == pytest.approx(1.1025, rel=1e-15)
    assert compounded_growth(0.06, 12, 3.0) == pytest.approx(1.005 ** 36, rel=1e-14)
    assert money_market(0.05, 0.0) == 1.0
    assert zcb_price(0.05, 3.0, 3.0) == 1.0
    assert zcb_price(0.04, 1.0, 6.0) == pytest.approx(math.exp(-0.2), rel=1e-15)
    assert zcb_yield(math.exp(-0.2), 1.0, 6.0) == pytest.approx(0.04, rel=1e-14)


def test_textbook_conversions():
    # 10% compounded semiannually = 9.758% continuous; 8% continuous = 8.08% quarterly
    assert round(float(to_continuous(0.10, 2)), 5) == 0.09758
    assert to_continuous(0.10, 2) == pytest.approx(2 * math.log(1.05), rel=1e-15)
    assert round(float(to_compounded(0.08, 4)), 4) == 0.0808
    assert to_compounded(0.08, 4) == pytest.approx(4 * (math.exp(0.02) - 1), rel=1e-15)


def test_textbook_coupon_bonds():
    # two-year 6% semiannual bond on a zero curve: price 98.39, yield 6.76%
    times = np.array([0.5, 1.0, 1.5, 2.0])
    cashflows = np.array([3.0, 3.0, 3.0, 103.0])
    price = bond_price(cashflows, times, [0.05, 0.058, 0.064, 0.068])
    assert round(float(price), 2) == 98.39
    # three-year 10% semiannual bond at a 12% yield: price 94.213, Macaulay duration 2.653 years
    times = np.arange(1, 7) * 0.5
    cashflows = np.array([5.0] * 5 + [105.0])
    price = bond_price(cashflows, times, 0.12)
    duration = float(np.sum(times * cashflows * np.exp(-0.12 * times)) / price)
    assert round(float(price), 3) == 94.213
    assert round(duration, 3) == 2.653


def test_vectorised_and_broadcasting_shapes():
    r = np.array([0.01, 0.02, 0.03])[:, None]
    T = np.array([1.0, 2.0])
    assert growth_factor(r, T).shape == (3, 2)
    assert compounded_growth(0.05, np.array([1, 2, 4]), 1.0).shape == (3,)
    assert zcb_price(r, 0.0, T).shape == (3, 2)
    assert bond_price([1.0, 1.0], T, r).shape == (3,)
    assert bond_price(np.ones((5, 2)), T, 0.03).shape == (5,)
    assert isinstance(zcb_price(0.05, 0.0, 1.0), np.floating)
    np.testing.assert_allclose(zcb_price(r, 0.0, T), np.exp(-r * T), rtol=1e-15)


# ---------------------------------------------------------------------------------- identities
def test_compounding_converges_with_first_order_error():
    r, T = 0.05, 10.0
    for m in [1e2, 1e3, 1e4, 1e5]:
        gap = growth_factor(r, T) - compounded_growth(r, m, T)
        approx = r * r * T * math.exp(r * T) / (2 * m)
        assert gap > 0
        assert abs(gap / approx - 1) < (2 * r / 3 + r * r * T / 4) / m * 1.05


def test_log1p_is_accurate_where_the_naive_formula_breaks():
    r, T, m = 0.05, 1.0, 1e17
    assert (1 + r / m) ** (m * T) == 1.0  # 1 + r/m rounds to 1: the naive formula loses all interest
    assert compounded_growth(r, m, T) == pytest.approx(math.exp(r * T), rel=1e-15)


def test_money_market_solves_its_ode():
    t, h, r = 2.0, 1e-5, 0.07
    derivative = (money_market(r, t + h) - money_market(r, t - h)) / (2 * h)
    assert derivative == pytest.approx(r * money_market(r, t), rel=1e-9)


def test_zcb_is_ratio_of_money_market_and_time_consistent():
    r, t, T = 0.045, 1.5, 7.0
    assert zcb_price(r, t, T) == pytest.approx(money_market(r, t) / money_market(r, T), rel=1e-14)
    assert zcb_price(r, 0, T) == pytest.approx(zcb_price(r, 0, t) * zcb_price(r, t, T), rel=1e-14)


def test_time_varying_rate_curve():
    def curve(s):
        return 0.02 + 0.01 * s

    # int_t^T (0.02 + 0.01 s) ds = 0.02 (T - t) + 0.005 (T^2 - t^2)
    t, T = 1.0, 4.0
    exact = math.exp(-(0.02 * 3 + 0.005 * 15))
    assert zcb_price(curve, t, T) == pytest.approx(exact, rel=1e-13)
    assert zcb_price(curve, 0, T) == pytest.approx(zcb_price(curve, 0, t) * zcb_price(curve, t, T), rel=1e-13)
    assert money_market(curve, T) == pytest.approx(math.exp(0.02 * 4 + 0.005 * 16), rel=1e-13)
    assert forward_rate(curve, 0.0, 1.0, 3.0) == pytest.approx(0.04, rel=1e-13)
    assert zcb_yield(zcb_price(curve, 0, T), 0, T) == pytest.approx(0.02 + 0.005 * T, rel=1e-13)
    times = np.array([1.0, 2.0])
    assert bond_price([1.0, 2.0], times, curve) == pytest.approx(
        float(zcb_price(curve, 0, 1.0) + 2 * zcb_price(curve, 0, 2.0)), rel=1e-13)


def test_forward_rate_from_discount_factors():
    zero = np.array([0.03, 0.04])  # zero rates to 1y and 2y
    z1, z2 = np.exp(-zero * [1.0, 2.0])
    # with a flat curve the forward rate is the rate
    assert forward_rate(0.05, 0.0, 1.0, 2.0) == pytest.approx(0.05, rel=1e-14)
    assert math.log(z1 / z2) == pytest.approx(0.05, rel=1e-14)
    # arrays of flat rates broadcast
    np.testing.assert_allclose(forward_rate(np.array([0.01, 0.02]), 0.0, 1.0, 2.0), [0.01, 0.02], rtol=1e-14)


# ---------------------------------------------------------------------------------- properties
@settings(max_examples=200, deadline=None)
@given(r=rate, m=freq)
def test_round_trip(r, m):
    assert to_continuous(to_compounded(r, m), m) == pytest.approx(r, rel=1e-12, abs=1e-15)


@settings(max_examples=200, deadline=None)
@given(r=rate, m=freq, T=horizon)
def test_equivalent_rate_gives_equal_growth(r, m, T):  # eq 22
    assert compounded_growth(to_compounded(r, m), m, T) == pytest.approx(growth_factor(r, T), rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(r=rate.filter(lambda x: abs(x) > 1e-6), m=freq)
def test_compounded_rate_exceeds_continuous_rate(r, m):  # e^x - 1 > x for x != 0
    assert to_compounded(r, m) > r


@settings(max_examples=200, deadline=None)
@given(r=rate.filter(lambda x: abs(x) > 1e-4), m=st.floats(1.0, 1e4), T=st.floats(0.5, 30.0))
def test_compounding_stays_below_continuous_and_increases_with_m(r, m, T):
    lower, upper = compounded_growth(r, m, T), compounded_growth(r, 2 * m, T)
    assert lower <= upper * (1 + 1e-15)
    assert upper <= growth_factor(r, T) * (1 + 1e-15)


@settings(max_examples=200, deadline=None)
@given(r=st.floats(1e-4, 0.5), t=st.floats(0.0, 10.0), a=st.floats(0.0, 20.0), b=st.floats(0.01, 20.0))
def test_zcb_positive_at_most_one_and_decreasing_in_maturity_for_positive_rates(r, t, a, b):
    z_near, z_far = zcb_price(r, t, t + a), zcb_price(r, t, t + a + b)
    assert 0 < z_far < z_near <= 1


@settings(max_examples=200, deadline=None)
@given(r=rate, t=st.floats(0, 10), d1=st.floats(0.1, 10), d2=st.floats(0.1, 10))
def test_time_consistency_and_yield(r, t, d1, d2):
    T1, T2 = t + d1, t + d1 + d2
    assert zcb_price(r, t, T2) == pytest.approx(zcb_price(r, t, T1) * zcb_price(r, T1, T2), rel=1e-13)
    assert zcb_yield(zcb_price(r, t, T2), t, T2) == pytest.approx(r, rel=1e-10, abs=1e-14)
    assert forward_rate(r, t, T1, T2) == pytest.approx(r, rel=1e-10, abs=1e-14)


# ---------------------------------------------------------------------------------- invalid input
@pytest.mark.parametrize("call, match", [
    (lambda: to_compounded(0.05, 0), "m must be > 0"),
    (lambda: to_compounded(0.05, -2), "m must be > 0"),
    (lambda: to_continuous(0.05, [1, 0]), "m must be > 0"),
    (lambda: compounded_growth(0.05, 0, 1.0), "m must be > 0"),
    (lambda: to_continuous(-2.0, 2), "r_m must be > -m"),
    (lambda: compounded_growth(-1.0, 1, 1.0), "r_m must be > -m"),
    (lambda: zcb_price(0.05, 2.0, 1.0), "T must be >= t"),
    (lambda: zcb_price(0.05, [0.0, 3.0], 2.0), "T must be >= t"),
    (lambda: zcb_price(lambda s: 0.05, 2.0, 1.0), "T must be >= t"),
    (lambda: zcb_yield(0.9, 1.0, 1.0), "T must be > t"),
    (lambda: zcb_yield(0.0, 0.0, 1.0), "price must be > 0"),
    (lambda: forward_rate(0.05, 2.0, 1.0, 3.0), "T1 must be >= t"),
    (lambda: forward_rate(0.05, 0.0, 2.0, 2.0), "T2 must be > T1"),
    (lambda: growth_factor(float("nan"), 1.0), "r must be finite"),
    (lambda: growth_factor(0.05, -1.0), "T must be >= 0"),
    (lambda: zcb_price(np.inf, 0.0, 1.0), "r must be finite"),
    (lambda: to_compounded(float("inf"), 2), "r must be finite"),
    (lambda: to_continuous(np.nan, 2), "r_m must be finite"),
    (lambda: money_market(0.05, -1.0), "t must be >= 0"),
    (lambda: bond_price([1.0, 1.0], [1.0, -1.0], 0.05), "times must be >= 0"),
    (lambda: bond_price([1.0, 1.0, 1.0], [1.0, 2.0], 0.05), "cashflows .* do not broadcast"),
    (lambda: bond_price(1.0, 1.0, 0.05), "cashflows and times must be arrays"),
    (lambda: forward_rate(np.nan, 0.0, 1.0, 2.0), "r_or_curve must be finite"),
    (lambda: zcb_price(lambda s: np.inf, 0.0, 1.0), "r must be a finite rate curve"),
    (lambda: growth_factor(1000.0, 10.0), "overflows"),
])
def test_invalid_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("bad", ["0.05", 0.05 + 0.01j, None])
def test_wrong_types_raise_type_error(bad):
    with pytest.raises(TypeError, match="r must be"):
        growth_factor(bad, 1.0)


def test_callable_where_a_number_is_needed_is_a_type_error():
    with pytest.raises(TypeError, match="r must be a real number"):
        growth_factor(lambda s: 0.05, 1.0)


# ---------------------------------------------------------------------------------- explorers
@pytest.mark.parametrize("plot_fn, params", [
    (rates.plot_compounding, {"r": 0.05, "T": 10.0, "log10_m": 0.0}),
    (rates.plot_compounding, {"r": -0.02, "T": 5.0, "log10_m": 3.0}),
    (rates.plot_pull_to_par, {"r": 0.05, "T": 10.0}),
    (rates.plot_pull_to_par, {"r": -0.01, "T": 5.0}),
    (rates.plot_replication, {"r": 0.05, "T": 5.0, "market_price": 0.70}),
    (rates.plot_replication, {"r": 0.05, "T": 5.0, "market_price": 0.80}),
])
def test_plot_functions_draw_labelled_axes(plot_fn, params, draws_labelled_axes):
    draws_labelled_axes(plot_fn, params)


def test_replication_plot_reports_locked_in_profit():
    matplotlib.use("Agg")
    fig = plt.figure()
    r, T, P = 0.05, 5.0, 0.70
    rates.plot_replication(fig, r=r, T=T, market_price=P)
    profit = (math.exp(-r * T) - P) * math.exp(r * T)
    assert f"{profit:.4f}" in fig.get_axes()[1].get_title()
    plt.close(fig)


# ---------------------------------------------------------------------------------- QuantLib
# A smoke test only: on a flat curve with SimpleDayCounter, QuantLib computes the same e^{-rT} and
# (1 + r/m)^{mT} as we do, so these check the plumbing, not the finance. The cross-checks that use
# what QuantLib adds (day counts on real dates, bootstrapped curves, bond yields, durations and
# convexity) are in tests/test_curves.py.
@pytest.fixture(scope="module")
def ql():
    """QuantLib (PyPI ``QuantLib``), the test dependency of the cross-checks."""
    return pytest.importorskip("QuantLib", reason="QuantLib (PyPI 'QuantLib') is needed for the cross-checks")


QL_FREQUENCIES = {1: "Annual", 2: "Semiannual", 4: "Quarterly", 12: "Monthly", 365: "Daily"}


@pytest.mark.parametrize("r", [-0.01, 0.0, 0.03, 0.05, 0.12])
@pytest.mark.parametrize("T", [0.25, 1.0, 2.5, 10.0, 30.0])
def test_discount_factors_match_quantlib(ql, r, T):
    curve = ql.FlatForward(ql.Date(15, 1, 2026), r, ql.SimpleDayCounter(), ql.Continuous, ql.NoFrequency)
    assert abs(curve.discount(T) - zcb_price(r, 0.0, T)) < 1e-12


@pytest.mark.parametrize("m", sorted(QL_FREQUENCIES))
@pytest.mark.parametrize("r", [-0.02, 0.01, 0.05, 0.10, 0.25])
def test_equivalent_rates_match_quantlib(ql, m, r):
    dc, freq = ql.SimpleDayCounter(), getattr(ql, QL_FREQUENCIES[m])
    continuous = ql.InterestRate(r, dc, ql.Continuous, ql.NoFrequency)
    assert abs(continuous.equivalentRate(ql.Compounded, freq, 1.0).rate() - to_compounded(r, m)) < 1e-12
    compounded = ql.InterestRate(r, dc, ql.Compounded, freq)
    assert abs(compounded.equivalentRate(ql.Continuous, ql.NoFrequency, 1.0).rate() - to_continuous(r, m)) < 1e-12
    assert abs(compounded.compoundFactor(3.5) - compounded_growth(r, m, 3.5)) < 1e-12


@pytest.mark.parametrize("r", [0.0, 0.02, 0.05])
@pytest.mark.parametrize("years", [1, 5, 10])
def test_zero_coupon_bond_npv_matches_quantlib(ql, r, years):
    today = ql.Date(15, 1, 2026)
    ql.Settings.instance().evaluationDate = today
    dc = ql.SimpleDayCounter()  # same day of month: whole months / 12, so T = years exactly
    maturity = today + ql.Period(years, ql.Years)
    T = dc.yearFraction(today, maturity)
    assert T == years
    curve = ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc, ql.Continuous, ql.NoFrequency))
    bond = ql.ZeroCouponBond(0, ql.NullCalendar(), 1.0, maturity, ql.Unadjusted, 100.0, today)  # redemption in % of face
    bond.setPricingEngine(ql.DiscountingBondEngine(curve))
    assert abs(bond.NPV() - zcb_price(r, 0.0, T)) < 1e-12
    # and as a one-cash-flow coupon bond
    assert abs(bond.NPV() - bond_price([1.0], [T], r)) < 1e-12


def test_compounding_plot_labels_the_marker_of_the_current_m():
    matplotlib.use("Agg")
    fig = plt.figure()
    rates.plot_compounding(fig, r=0.05, T=10.0, log10_m=2.0)
    labels = fig.get_axes()[1].get_legend_handles_labels()[1]
    assert any("this $m$ = 100" in label for label in labels)
    plt.close(fig)


def test_replication_plot_shows_both_portfolios():
    matplotlib.use("Agg")
    fig = plt.figure()
    rates.plot_replication(fig, r=0.05, T=5.0, market_price=0.70)
    lines = {line.get_label(): line for line in fig.get_axes()[0].get_lines()}
    a = next(line for label, line in lines.items() if label.startswith("A:"))
    b = next(line for label, line in lines.items() if label.startswith("B:"))
    np.testing.assert_allclose(a.get_ydata(), b.get_ydata(), rtol=1e-14)  # they coincide ...
    assert b.get_zorder() > a.get_zorder() and a.get_linewidth() > 3 * b.get_linewidth()  # ... both visible
    assert b.get_linestyle() == "--"
    plt.close(fig)
