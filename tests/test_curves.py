"""Tests of utils.curves: Hull's tables, identities, properties, invalid input, QuantLib cross-checks."""

import datetime as dt
import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from utils import curves
from utils.curves import (bootstrap, convexity, coupon_schedule, curve_price, discount, discount_factor,
                          duration, forward_rates, fra_value, instantaneous_forward, par_yield, price_from_yield,
                          year_fraction, yield_to_maturity, zero_rate)

HULL_T = [0.25, 0.5, 1.0, 1.5, 2.0]
HULL_P = [97.5, 94.9, 90.0, 96.0, 101.6]
HULL_C = [0.0, 0.0, 0.0, 0.08, 0.12]
HULL_ZERO = [10.127, 10.469, 10.536, 10.681, 10.808]  # Hull, Table 4.4 (percent, continuous)
INTERPOLATIONS = list(curves.INTERPOLATIONS)

# real date pairs: month ends, February in leap and common years, year ends, mid-month
DATE_PAIRS = [
    (dt.date(2024, 1, 31), dt.date(2024, 2, 29)),
    (dt.date(2024, 2, 29), dt.date(2025, 2, 28)),
    (dt.date(2023, 2, 28), dt.date(2024, 2, 29)),
    (dt.date(2024, 1, 30), dt.date(2024, 3, 31)),
    (dt.date(2024, 1, 31), dt.date(2024, 3, 31)),
    (dt.date(2024, 3, 31), dt.date(2024, 4, 30)),
    (dt.date(2023, 2, 28), dt.date(2023, 3, 31)),
    (dt.date(2024, 2, 29), dt.date(2024, 3, 31)),
    (dt.date(2023, 12, 31), dt.date(2024, 12, 31)),
    (dt.date(2020, 2, 29), dt.date(2024, 2, 29)),
    (dt.date(2024, 5, 31), dt.date(2024, 8, 31)),
    (dt.date(2025, 8, 31), dt.date(2026, 2, 28)),
    (dt.date(2026, 1, 15), dt.date(2026, 7, 15)),
    (dt.date(2024, 2, 28), dt.date(2024, 3, 1)),
    (dt.date(2026, 1, 15), dt.date(2026, 1, 15)),
    (dt.date(1999, 12, 31), dt.date(2030, 6, 30)),
]


# ---------------------------------------------------------------------------------- known values
def test_hull_bootstrap_table_4_4():
    for interpolation in INTERPOLATIONS:
        r = bootstrap(HULL_T, HULL_P, HULL_C, interpolation=interpolation)
        assert [round(100 * float(x), 3) for x in r] == HULL_ZERO
    r = bootstrap(HULL_T, HULL_P, HULL_C)
    # the three zero-coupon nodes in closed form
    assert r[0] == pytest.approx(4 * math.log(100 / 97.5), rel=1e-14)
    assert r[1] == pytest.approx(2 * math.log(100 / 94.9), rel=1e-14)
    assert r[2] == pytest.approx(math.log(100 / 90.0), rel=1e-14)
    # and the 1.5-year node solves Hull's equation 4 e^{-0.5 r2} + 4 e^{-r3} + 104 e^{-1.5 R} = 96
    assert 4 * math.exp(-0.5 * r[1]) + 4 * math.exp(-r[2]) + 104 * math.exp(-1.5 * r[3]) == pytest.approx(96, rel=1e-14)


def test_hull_par_yield_table_4_2():
    zero = [0.05, 0.058, 0.064, 0.068]
    c = par_yield([0.5, 1.0, 1.5, 2.0], zero, 2.0)
    assert round(100 * c, 2) == 6.87
    # a bond paying the par yield is worth par
    assert curve_price([0.5, 1.0, 1.5, 2.0], zero, 2.0, c, principal=100.0) == pytest.approx(100.0, rel=1e-14)


def test_hull_bond_price_yield_and_duration():
    times, flows = coupon_schedule(2.0, 0.06)
    price = curve_price([0.5, 1.0, 1.5, 2.0], [0.05, 0.058, 0.064, 0.068], 2.0, 0.06)
    assert round(price, 2) == 98.39
    assert round(100 * yield_to_maturity(times, flows, price), 2) == 6.76
    times, flows = coupon_schedule(3.0, 0.10)
    assert round(price_from_yield(times, flows, 0.12), 3) == 94.213
    assert round(duration(times, flows, 0.12).macaulay, 3) == 2.653


def test_year_fraction_known_values():
    jan15, jul15 = dt.date(2026, 1, 15), dt.date(2026, 7, 15)
    assert year_fraction(jan15, jul15, "ACT/365F") == 181 / 365
    assert year_fraction(jan15, jul15, "ACT/360") == 181 / 360
    assert year_fraction(jan15, jul15, "30/360") == 0.5
    assert year_fraction(dt.date(2024, 1, 31), dt.date(2024, 3, 31), "30/360") == 60 / 360
    assert year_fraction(dt.date(2023, 2, 28), dt.date(2023, 3, 31), "30/360") == 33 / 360  # no Feb rule
    assert year_fraction(dt.date(2024, 1, 1), dt.date(2025, 1, 1), "ACT/365F") == 366 / 365  # leap year


def test_discount_factor_conventions():
    assert discount_factor(0.04, 0.5, "simple") == pytest.approx(1 / 1.02, rel=1e-15)
    assert discount_factor(0.04, 0.5, 2) == pytest.approx(1 / 1.02, rel=1e-15)  # one period: same
    assert discount_factor(0.04, 2.0, 2) == pytest.approx(1.02 ** -4, rel=1e-14)
    assert discount_factor(0.04, 2.0, "continuous") == pytest.approx(math.exp(-0.08), rel=1e-15)
    # for tau < 1, 1 + r tau > (1 + r)^tau: simple interest discounts more than annual compounding
    assert discount_factor(0.04, 0.25, "simple") < discount_factor(0.04, 0.25, 1)


def test_coupon_schedule():
    t, c = coupon_schedule(1.5, 0.08)
    np.testing.assert_allclose(t, [0.5, 1.0, 1.5])
    np.testing.assert_allclose(c, [4.0, 4.0, 104.0])
    t, c = coupon_schedule(0.25, 0.0)
    assert list(t) == [0.25] and list(c) == [100.0]
    t, c = coupon_schedule(1.25, 0.04, frequency=2, principal=1.0)  # short first period
    np.testing.assert_allclose(t, [0.25, 0.75, 1.25])
    np.testing.assert_allclose(c, [0.02, 0.02, 1.02])


def test_fra_value_matches_replication():
    r = bootstrap(HULL_T, HULL_P, HULL_C)
    T1, T2, K, L = 1.0, 1.5, 0.11, 1e6
    z1, z2 = discount(HULL_T, r, [T1, T2])
    # cash flows of a FRA receiving K: -L at T1, +L (1 + K tau) at T2
    replication = -L * z1 + L * (1 + K * (T2 - T1)) * z2
    assert fra_value(HULL_T, r, T1, T2, K, L) == pytest.approx(replication, rel=1e-12)
    forward = (z1 / z2 - 1) / (T2 - T1)
    assert fra_value(HULL_T, r, T1, T2, forward, L) == pytest.approx(0.0, abs=1e-8)  # at-market FRA


# ---------------------------------------------------------------------------------- identities
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_curve_reproduces_its_nodes_and_prices(interpolation):
    r = bootstrap(HULL_T, HULL_P, HULL_C, interpolation=interpolation)
    np.testing.assert_allclose(discount(HULL_T, r, HULL_T, interpolation), np.exp(-r * np.array(HULL_T)),
                               rtol=1e-15)
    np.testing.assert_allclose(zero_rate(HULL_T, r, HULL_T, interpolation), r, rtol=1e-14)
    for T, P, c in zip(HULL_T, HULL_P, HULL_C):
        assert curve_price(HULL_T, r, T, c, interpolation=interpolation) == pytest.approx(P, rel=1e-13)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_zero_rate_is_the_average_forward(interpolation):
    r = bootstrap(HULL_T, HULL_P, HULL_C, interpolation=interpolation)
    for T in [0.1, 0.6, 1.2, 1.5, 1.9, 2.0]:
        integral, _ = quad(lambda s: float(instantaneous_forward(HULL_T, r, s, interpolation)), 0.0, T,
                           points=[t for t in HULL_T if t < T], epsabs=1e-14, epsrel=1e-13, limit=200)
        assert integral / T == pytest.approx(float(zero_rate(HULL_T, r, T, interpolation)), rel=1e-11)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_instantaneous_forward_is_minus_log_discount_derivative(interpolation):
    r = bootstrap(HULL_T, HULL_P, HULL_C, interpolation=interpolation)
    h = 1e-6
    for t in [0.1, 0.3, 0.7, 1.2, 1.7, 1.95]:  # away from the nodes, where f jumps
        slope = -(math.log(discount(HULL_T, r, t + h, interpolation)) -
                  math.log(discount(HULL_T, r, t - h, interpolation))) / (2 * h)
        assert slope == pytest.approx(float(instantaneous_forward(HULL_T, r, t, interpolation)), abs=1e-8)


def test_forward_at_a_node_is_the_right_segment():
    T, r = [1.0, 2.0], [0.03, 0.04]  # node forwards 3% and 5%
    np.testing.assert_allclose(instantaneous_forward(T, r, [0.0, 1.0, 2.0], "log-linear-discount"),
                               [0.03, 0.05, 0.05], rtol=1e-14)
    np.testing.assert_allclose(instantaneous_forward(T, r, [0.0, 1.0, 2.0], "linear-zero"),
                               [0.03, 0.04, 0.06], rtol=1e-14)  # r + t r'


def test_log_linear_forwards_are_the_node_forwards():
    r = bootstrap(HULL_T, HULL_P, HULL_C, interpolation="log-linear-discount")
    mids = (np.concatenate(([0.0], HULL_T[:-1])) + np.array(HULL_T)) / 2
    np.testing.assert_allclose(instantaneous_forward(HULL_T, r, mids, "log-linear-discount"),
                               forward_rates(HULL_T, r), rtol=1e-14)
    # linear zero rates: the node forward is the instantaneous forward at the segment midpoint
    np.testing.assert_allclose(instantaneous_forward(HULL_T, r, mids, "linear-zero"), forward_rates(HULL_T, r),
                               rtol=1e-12)


def test_linear_zero_can_have_negative_forwards_where_log_linear_has_none():
    T, r = [1.0, 2.0], [0.10, 0.051]  # node forward 2 * 5.1% - 10% = 0.2% > 0
    assert forward_rates(T, r)[1] > 0
    assert instantaneous_forward(T, r, 1.99, "linear-zero") < 0
    assert discount(T, r, 1.99, "linear-zero") < discount(T, r, 2.0, "linear-zero")  # discount rises
    assert instantaneous_forward(T, r, 1.99, "log-linear-discount") > 0


def test_duration_and_convexity_are_derivatives():
    times, flows = coupon_schedule(10.0, 0.05)
    h = 1e-5
    for comp in ["continuous", 1, 2, 12]:
        y = 0.05
        P = price_from_yield(times, flows, y, comp)
        up, down = price_from_yield(times, flows, y + h, comp), price_from_yield(times, flows, y - h, comp)
        assert duration(times, flows, y, comp).modified == pytest.approx(-(up - down) / (2 * h) / P, rel=1e-8)
        assert convexity(times, flows, y, comp) == pytest.approx((up - 2 * P + down) / h**2 / P, rel=1e-4)
    d = duration(times, flows, 0.05, 2)
    assert d.modified == pytest.approx(d.macaulay / 1.025, rel=1e-15)
    assert duration(times, flows, 0.05).modified == duration(times, flows, 0.05).macaulay


def test_shift_errors_are_second_and_third_order():
    times, flows = coupon_schedule(10.0, 0.05)
    err = curves.shift_errors(times, flows, 0.05, [1.0, 10.0, 100.0], 2)
    slope1 = np.diff(np.log10(err["first"]))
    slope2 = np.diff(np.log10(err["second"]))
    assert np.allclose(slope1, 2.0, atol=0.1) and np.allclose(slope2, 3.0, atol=0.15)
    assert np.all(err["second"] < err["first"])


# ---------------------------------------------------------------------------------- properties
node_gaps = st.lists(st.sampled_from([0.25, 0.5, 0.75, 1.0, 1.5, 2.0]), min_size=1, max_size=7)
positive_forwards = st.floats(1e-4, 0.15)


@settings(max_examples=100, deadline=None)
@given(gaps=node_gaps, data=st.data())
def test_discount_factors_decrease_for_positive_forwards(gaps, data):
    T = np.cumsum(gaps)
    f = np.array(data.draw(st.lists(positive_forwards, min_size=len(T), max_size=len(T))))
    r = np.cumsum(f * np.diff(np.concatenate(([0.0], T)))) / T  # zero rate = average forward
    np.testing.assert_allclose(forward_rates(T, r), f, rtol=1e-10)
    grid = np.linspace(0.0, T[-1], 400)
    # log-linear discount factors: positive node forwards are the instantaneous forwards
    assert np.all(np.diff(discount(T, r, grid, "log-linear-discount")) < 0)
    # linear zero rates: the discount factor falls wherever the instantaneous forward is positive
    z = discount(T, r, grid, "linear-zero")
    fwd = instantaneous_forward(T, r, grid, "linear-zero")
    same_segment = np.searchsorted(T, grid[:-1], side="right") == np.searchsorted(T, grid[1:], side="left")
    both_positive = (fwd[:-1] > 0) & (fwd[1:] > 0) & same_segment
    assert np.all(np.diff(z)[both_positive] < 0)


@settings(max_examples=60, deadline=None)
@given(gaps=node_gaps, data=st.data(), interpolation=st.sampled_from(INTERPOLATIONS),
       frequency=st.sampled_from([1, 2, 4]))
def test_bootstrapping_the_prices_of_a_curve_returns_the_curve(gaps, data, interpolation, frequency):
    T = np.cumsum(gaps)
    n = len(T)
    r = np.array(data.draw(st.lists(st.floats(-0.02, 0.12), min_size=n, max_size=n)))
    coupons = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.02, 0.05, 0.10]), min_size=n, max_size=n)))
    prices = [curve_price(T, r, t, c, frequency, 100.0, interpolation) for t, c in zip(T, coupons)]
    back = bootstrap(T, prices, coupons, frequency, 100.0, interpolation)
    np.testing.assert_allclose(back, r, rtol=0, atol=1e-11)


@settings(max_examples=100, deadline=None)
@given(y=st.floats(-0.02, 0.2), maturity=st.sampled_from([0.5, 1.0, 2.5, 7.0, 30.0]),
       coupon=st.floats(0.0, 0.12), comp=st.sampled_from(["continuous", 1, 2, 12]))
def test_yield_to_maturity_inverts_the_price(y, maturity, coupon, comp):
    times, flows = coupon_schedule(maturity, coupon)
    price = price_from_yield(times, flows, y, comp)
    assert yield_to_maturity(times, flows, price, comp) == pytest.approx(y, abs=1e-11)
    d = duration(times, flows, y, comp)
    assert times[0] - 1e-12 <= d.macaulay <= times[-1] + 1e-12  # a weighted mean time
    assert convexity(times, flows, y, comp) > 0


@settings(max_examples=200, deadline=None)
@given(a=st.dates(dt.date(1990, 1, 1), dt.date(2060, 12, 31)), days=st.integers(0, 20000))
def test_year_fraction_properties(a, days):
    b = a + dt.timedelta(days=days)
    assert year_fraction(a, b, "ACT/360") == pytest.approx(year_fraction(a, b, "ACT/365F") * 365 / 360, rel=1e-15)
    thirty = year_fraction(a, b, "30/360")
    assert thirty >= 0 and abs(thirty * 360 - days) <= 6 * (days // 365 + 1) + 3  # about a day a month


# ---------------------------------------------------------------------------------- invalid input
@pytest.mark.parametrize("call, match", [
    (lambda: bootstrap([1.0, 0.5], [90.0, 95.0], [0, 0]), "maturities must be strictly increasing"),
    (lambda: bootstrap([0.5, 0.5], [95.0, 95.0], [0, 0]), "maturities must be strictly increasing"),
    (lambda: bootstrap([0.0, 1.0], [100.0, 90.0], [0, 0]), "maturities must be > 0"),
    (lambda: bootstrap([0.5, 1.0, 1.5], [95.0, 90.0, 7.0], [0, 0, 0.08]),
     r"prices\[2\] = 7 \(instrument 2, maturity 1.5\) implies a non-positive discount factor"),
    (lambda: bootstrap([0.5, 1.0], [95.0, -1.0], [0, 0]), "prices must be > 0"),
    (lambda: bootstrap([0.5, 1.0], [95.0, 90.0], [0, -0.01]), "coupon_rates must be >= 0"),
    (lambda: bootstrap([0.5, 1.0], [95.0], [0, 0]), "same length"),
    (lambda: bootstrap([0.5, 1.0], [95.0, 90.0], [0, 0], frequency=0), "frequency must be an int >= 1"),
    (lambda: bootstrap([0.5, 1.0], [95.0, 90.0], [0, 0], interpolation="cubic"), "interpolation must be one of"),
    (lambda: year_fraction(dt.date(2026, 1, 1), dt.date(2026, 7, 1), "ACT/ACT"), "convention must be one of"),
    (lambda: year_fraction(dt.date(2026, 7, 1), dt.date(2026, 1, 1), "ACT/360"), "end must be >= start"),
    (lambda: discount([1.0, 2.0], [0.05, 0.06], 2.5), r"t must be in \[0, maturities\[-1\]\]"),
    (lambda: discount([1.0, 2.0], [0.05, 0.06], -0.1), r"t must be in \[0, maturities\[-1\]\]"),
    (lambda: discount([2.0, 1.0], [0.05, 0.06], 0.5), "maturities must be strictly increasing"),
    (lambda: discount([1.0, 2.0], [0.05], 0.5), "zero_rates must have one rate per maturity"),
    (lambda: par_yield([1.0, 2.0], [0.05, 0.06], 3.0), r"t must be in \[0, maturities"),
    (lambda: fra_value([1.0, 2.0], [0.05, 0.06], 1.5, 1.0, 0.05), "T1 and T2 must satisfy"),
    (lambda: duration([1.0, 2.0], [5.0, 105.0], 0.05, "quarterly"), "compounding must be"),
    (lambda: duration([1.0, 2.0], [5.0, 105.0], 0.05, "simple"), "compounding must be 'continuous' or an int"),
    (lambda: duration([1.0, -2.0], [5.0, 105.0], 0.05), "cash_times must be > 0"),
    (lambda: convexity([1.0, 2.0], [5.0], 0.05), "same length"),
    (lambda: yield_to_maturity([1.0, 2.0], [5.0, 105.0], 0.0), "price must be > 0"),
    (lambda: price_from_yield([1.0, 2.0], [5.0, 105.0], -3.0, 2), "yield_ must be > -m"),
    (lambda: discount_factor(0.05, -1.0), "tau must be finite and >= 0"),
    (lambda: discount_factor(-3.0, 0.5, "simple"), "rate must be > -1/tau"),
    (lambda: coupon_schedule(0.0, 0.05), "maturity must be > 0"),
    (lambda: coupon_schedule(1.0, -0.05), "coupon_rate must be >= 0"),
    (lambda: coupon_schedule(1.0, 0.05, principal=0.0), "principal must be > 0"),
    (lambda: zero_rate([1.0, 2.0], [0.05, np.nan], 1.0), "zero_rates must be finite"),
])
def test_invalid_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_dates_must_be_dates():
    with pytest.raises(TypeError, match="start must be a datetime.date"):
        year_fraction("2026-01-01", dt.date(2026, 7, 1), "ACT/360")


# ---------------------------------------------------------------------------------- figures
@pytest.mark.parametrize("plot_fn, params", [
    (curves.plot_bootstrap, {}),
    (curves.plot_bootstrap, {"p_2": 103.0, "interpolation": "log-linear-discount"}),
    (curves.plot_bootstrap, {"p_15": 5.0}),  # no curve: the message is drawn instead
    (curves.plot_interpolation, {}),
    (curves.plot_shift_errors, {}),
    (curves.plot_shift_errors, {"maturity": 3.0, "coupon_rate": 0.10, "yield_": 0.12, "compounding": "continuous"}),
])
def test_plot_functions_draw_labelled_axes(plot_fn, params, draws_labelled_axes):
    draws_labelled_axes(plot_fn, params)


def test_bootstrap_explorer_reports_inconsistent_prices():
    matplotlib.use("Agg")
    fig = plt.figure()
    curves.plot_bootstrap(fig, p_15=5.0)
    texts = [t.get_text() for t in fig.get_axes()[0].texts]
    assert any("prices[3]" in t for t in texts)
    plt.close(fig)


# ---------------------------------------------------------------------------------- QuantLib
@pytest.fixture(scope="module")
def ql():
    """QuantLib (PyPI ``QuantLib``), the independent implementation these tests cross-check."""
    return pytest.importorskip("QuantLib", reason="QuantLib (PyPI 'QuantLib') is needed for the cross-checks")


TODAY = (15, 1, 2026)


def _ql_setup(ql):
    today = ql.Date(*TODAY)
    ql.Settings.instance().evaluationDate = today
    # 30/360 bond basis from the 15th: 3, 6, 12, ... months are exactly 0.25, 0.5, 1, ... years
    return today, ql.Thirty360(ql.Thirty360.BondBasis)


def _ql_bond(ql, today, dc, years, coupon):
    maturity = today + ql.Period(int(round(12 * years)), ql.Months)
    schedule = ql.Schedule(today, maturity, ql.Period(ql.Semiannual), ql.NullCalendar(), ql.Unadjusted,
                           ql.Unadjusted, ql.DateGeneration.Backward, False)
    return schedule


def _ql_curve(ql, maturities, prices, coupons, interpolation):
    today, dc = _ql_setup(ql)
    helpers = [ql.FixedRateBondHelper(ql.QuoteHandle(ql.SimpleQuote(p)), 0, 100.0, _ql_bond(ql, today, dc, t, c),
                                      [c], dc, ql.Unadjusted, 100.0, today)
               for t, p, c in zip(maturities, prices, coupons)]
    cls = {"log-linear-discount": ql.PiecewiseLogLinearDiscount, "linear-zero": ql.PiecewiseLinearZero}
    return cls[interpolation](today, helpers, dc), helpers


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_bootstrap_matches_quantlib_on_hull_bonds(ql, interpolation):
    curve, _ = _ql_curve(ql, HULL_T, HULL_P, HULL_C, interpolation)
    ours = bootstrap(HULL_T, HULL_P, HULL_C, interpolation=interpolation)
    assert list(curve.times())[1:] == HULL_T
    for T, r in zip(HULL_T, ours):
        assert abs(curve.zeroRate(T, ql.Continuous).rate() - r) < 1e-10
        assert abs(curve.discount(T) - math.exp(-r * T)) < 1e-10


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_bootstrap_matches_quantlib_with_cash_flows_between_nodes(ql, interpolation):
    T = [0.5, 1.0, 2.0, 3.0, 5.0, 7.0]
    coupons = [0.0, 0.04, 0.05, 0.06, 0.05, 0.03]
    zero = [0.03, 0.035, 0.04, 0.042, 0.045, 0.044]
    prices = [curve_price(T, zero, t, c, interpolation=interpolation) for t, c in zip(T, coupons)]
    curve, _ = _ql_curve(ql, T, prices, coupons, interpolation)
    ours = bootstrap(T, prices, coupons, interpolation=interpolation)
    for t, r in zip(T, ours):
        assert abs(curve.zeroRate(t, ql.Continuous).rate() - r) < 1e-10
    # between the nodes too, and the forwards
    for t in [0.1, 0.75, 1.3, 2.6, 4.0, 6.5]:
        assert abs(curve.discount(t) - discount(T, ours, t, interpolation)) < 1e-10
        assert abs(curve.forwardRate(t, t, ql.Continuous).rate() -
                   instantaneous_forward(T, ours, t, interpolation)) < 1e-6  # QuantLib differentiates numerically


@pytest.mark.parametrize("years, coupon, price", [(1.5, 0.08, 96.0), (2.0, 0.12, 101.6), (3.0, 0.10, 94.213)])
@pytest.mark.parametrize("compounding", ["continuous", 1, 2])
def test_fixed_rate_bond_yield_and_durations_match_quantlib(ql, years, coupon, price, compounding):
    today, dc = _ql_setup(ql)
    bond = ql.FixedRateBond(0, 100.0, _ql_bond(ql, today, dc, years, coupon), [coupon], dc)
    comp, freq = {"continuous": (ql.Continuous, ql.NoFrequency), 1: (ql.Compounded, ql.Annual),
                  2: (ql.Compounded, ql.Semiannual)}[compounding]
    times, flows = coupon_schedule(years, coupon)
    y = yield_to_maturity(times, flows, price, compounding)
    assert abs(bond.bondYield(ql.BondPrice(price, ql.BondPrice.Clean), dc, comp, freq, today, 1e-15, 1000) - y) < 1e-10
    rate = ql.InterestRate(y, dc, comp, freq)
    ours = duration(times, flows, y, compounding)
    assert abs(ql.BondFunctions.duration(bond, rate, ql.Duration.Modified, today) - ours.modified) < 1e-10
    if compounding != "continuous":  # QuantLib defines Macaulay duration for compounded yields only
        assert abs(ql.BondFunctions.duration(bond, rate, ql.Duration.Macaulay, today) - ours.macaulay) < 1e-10
    assert abs(ql.BondFunctions.convexity(bond, rate, today) - convexity(times, flows, y, compounding)) < 1e-9
    assert abs(bond.cleanPrice(y, dc, comp, freq, today) - price) < 1e-9


def test_fixed_rate_bond_npv_on_the_bootstrapped_curve_matches_quantlib(ql):
    curve, _ = _ql_curve(ql, HULL_T, HULL_P, HULL_C, "log-linear-discount")
    today, dc = _ql_setup(ql)
    ours = bootstrap(HULL_T, HULL_P, HULL_C, interpolation="log-linear-discount")
    for years, coupon in [(1.0, 0.09), (1.5, 0.05), (2.0, 0.07), (2.0, 0.0)]:
        bond = ql.FixedRateBond(0, 100.0, _ql_bond(ql, today, dc, years, coupon), [coupon], dc)
        bond.setPricingEngine(ql.DiscountingBondEngine(ql.YieldTermStructureHandle(curve)))
        assert abs(bond.NPV() - curve_price(HULL_T, ours, years, coupon, interpolation="log-linear-discount")) < 1e-9


@pytest.mark.parametrize("start, end", DATE_PAIRS)
def test_day_counts_match_quantlib(ql, start, end):
    def qd(d):
        return ql.Date(d.day, d.month, d.year)

    counters = {"ACT/365F": ql.Actual365Fixed(), "ACT/360": ql.Actual360(),
                "30/360": ql.Thirty360(ql.Thirty360.BondBasis)}
    for convention, dc in counters.items():
        assert year_fraction(start, end, convention) == pytest.approx(dc.yearFraction(qd(start), qd(end)),
                                                                     rel=1e-15, abs=1e-15)
