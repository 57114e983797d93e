"""From one rate to a yield curve (chapter ``09_yield_curve``).

Extends section 5.1.1 of the notes (eq 24, ``Z(t, T) = e^{-r(T-t)}``) from one rate to a curve of
zero rates ``r(T)``: day counts and compounding conventions, bootstrapping zero rates from bond
prices, interpolation between the nodes, forward rates, par yields, yields to maturity, duration
and convexity. The standard reference for all of it is Hull, *Options, Futures, and Other
Derivatives*, chapter 4.

Building blocks come from :mod:`utils.rates` (discount factors ``zcb_price``, coupon-bond prices
``bond_price``, compounding ``compounded_growth``); this module adds what a *curve* needs.

Conventions: times in years from today (``t = 0``); zero rates continuously compounded; a curve is
given by its nodes ``maturities`` (strictly increasing, > 0) and the zero rates there. Between
nodes the curve is interpolated either

* ``"linear-zero"``: ``r(t)`` linear in ``t`` between nodes, or
* ``"log-linear-discount"``: ``ln Z(0, t) = -r(t) t`` linear in ``t`` between nodes (piecewise
  constant instantaneous forwards; what QuantLib's ``PiecewiseLogLinearDiscount`` does);

before the first node both keep the zero rate flat (``r(t) = r_1``, which is also log-linear in
``Z`` from ``Z(0, 0) = 1``). The curve is not extrapolated beyond its last node: asking for
``t > maturities[-1]`` raises ``ValueError``.

Bad input raises ``ValueError`` naming the argument and the accepted range (``TypeError`` for the
wrong kind of object).

The plotting functions at the end (``plot_*``) are the chapter's figures and explorer.
"""

from __future__ import annotations

import datetime as _dt
from typing import NamedTuple, Union

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq

from .plotting import PALETTE
from .rates import bond_price, compounded_growth, zcb_price, zcb_yield

__all__ = [
    "CONVENTIONS",
    "INTERPOLATIONS",
    "year_fraction",
    "discount_factor",
    "coupon_schedule",
    "discount",
    "zero_rate",
    "curve_price",
    "bootstrap",
    "forward_rates",
    "instantaneous_forward",
    "par_yield",
    "fra_value",
    "price_from_yield",
    "yield_to_maturity",
    "Duration",
    "duration",
    "convexity",
    "shift_errors",
    "plot_bootstrap",
    "plot_interpolation",
    "plot_shift_errors",
]

CONVENTIONS = ("ACT/365F", "ACT/360", "30/360")
INTERPOLATIONS = ("linear-zero", "log-linear-discount")
Compounding = Union[str, int]

_TOL = 1e-12  # times closer than this (years, ~30 microseconds) are the same date


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------

def _vector(x, name: str) -> np.ndarray:
    """``x`` as a finite float64 1-D array (a scalar becomes length 1)."""
    raw = np.asarray(x)
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers, got {x!r}")
    a = np.atleast_1d(raw.astype(np.float64))
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {raw.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (no nan or inf), got {x!r}")
    return a


def _curve(maturities, zero_rates) -> tuple[np.ndarray, np.ndarray]:
    """Validated curve nodes: maturities > 0 strictly increasing, one finite zero rate each."""
    T = _vector(maturities, "maturities")
    r = _vector(zero_rates, "zero_rates")
    if np.any(T <= 0):
        raise ValueError(f"maturities must be > 0 (years from today), got {maturities!r}")
    if np.any(np.diff(T) <= 0):
        raise ValueError(f"maturities must be strictly increasing, got {maturities!r}")
    if r.shape != T.shape:
        raise ValueError(f"zero_rates must have one rate per maturity: {r.size} rates for {T.size} maturities")
    return T, r


def _interpolation(interpolation: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    return interpolation


def _frequency(frequency, name: str = "frequency") -> int:
    if isinstance(frequency, bool) or not isinstance(frequency, (int, np.integer)) or frequency < 1:
        raise ValueError(f"{name} must be an int >= 1 (payments per year), got {frequency!r}")
    return int(frequency)


def _compounding(compounding: Compounding) -> Union[str, int]:
    """``"continuous"``, ``"simple"`` or an int ``m >= 1`` (compounding periods per year)."""
    if isinstance(compounding, str):
        if compounding not in ("continuous", "simple"):
            raise ValueError(f"compounding must be 'continuous', 'simple' or an int m >= 1, got {compounding!r}")
        return compounding
    return _frequency(compounding, "compounding")


def _times(t, T: np.ndarray, name: str = "t") -> np.ndarray:
    times = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(times)):
        raise ValueError(f"{name} must be finite, got {t!r}")
    if np.any(times < 0) or np.any(times > T[-1] * (1 + 1e-14)):
        raise ValueError(f"{name} must be in [0, maturities[-1]] = [0, {T[-1]:g}] (no extrapolation), got {t!r}")
    return times


def _scalar(a: np.ndarray):
    return a[()] if isinstance(a, np.ndarray) and a.ndim == 0 else a


# ----------------------------------------------------------------------------------------------
# conventions: day counts and compounding
# ----------------------------------------------------------------------------------------------

def year_fraction(start: _dt.date, end: _dt.date, convention: str) -> float:
    """Year fraction between two dates under a day-count convention (eq-curves-daycount).

    ``convention``:

    * ``"ACT/365F"``: actual days / 365 (Actual/365 Fixed; leap years still divide by 365);
    * ``"ACT/360"``: actual days / 360 (money markets);
    * ``"30/360"``: the *bond basis* (ISDA 2006 section 4.16(f), "30/360" or "Bond Basis", also
      "30A/360"; QuantLib's ``Thirty360(Thirty360.BondBasis)``). With dates ``Y/M/D``:
      if ``D1 = 31`` set ``D1 = 30``; then if ``D2 = 31`` and ``D1 = 30`` set ``D2 = 30``; the
      fraction is ``(360 (Y2 - Y1) + 30 (M2 - M1) + D2 - D1) / 360``. There is no end-of-February
      rule (that is the "30/360 US" variant).

    ``start`` and ``end`` are ``datetime.date`` objects with ``end >= start``.

    >>> year_fraction(_dt.date(2024, 1, 31), _dt.date(2024, 3, 31), "30/360")
    0.16666666666666666
    """
    for name, d in (("start", start), ("end", end)):
        if not isinstance(d, _dt.date):
            raise TypeError(f"{name} must be a datetime.date, got {type(d).__name__}")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if end < start:
        raise ValueError(f"end must be >= start, got start={start}, end={end}")
    if convention == "30/360":
        d1, d2 = min(start.day, 30), end.day
        if d2 == 31 and d1 == 30:
            d2 = 30
        days = 360 * (end.year - start.year) + 30 * (end.month - start.month) + d2 - d1
        return days / 360.0
    actual = (end - start).days
    return actual / (365.0 if convention == "ACT/365F" else 360.0)


def discount_factor(rate: ArrayLike, tau: ArrayLike, compounding: Compounding = "continuous") -> np.ndarray:
    """Discount factor for a rate quoted with ``compounding`` over a year fraction ``tau``.

    ``"simple"``: ``1 / (1 + r tau)`` (money-market rates below one year, eq-curves-simple);
    ``m`` (int): ``(1 + r/m)^{-m tau}`` (eq-rates-discrete, via :func:`utils.rates.compounded_growth`);
    ``"continuous"``: ``e^{-r tau}`` (notes eq 24, :func:`utils.rates.zcb_price`). ``tau >= 0``;
    shapes broadcast.

    >>> float(discount_factor(0.04, 0.5, "simple"))  # 1 / 1.02
    0.9803921568627451
    """
    kind = _compounding(compounding)
    r = np.asarray(rate, dtype=np.float64)
    tau_ = np.asarray(tau, dtype=np.float64)
    if np.any(tau_ < 0) or not np.all(np.isfinite(tau_)):
        raise ValueError(f"tau must be finite and >= 0, got {tau!r}")
    if kind == "continuous":
        return zcb_price(r, 0.0, tau_)
    if kind == "simple":
        growth = 1.0 + r * tau_
        if np.any(growth <= 0):
            raise ValueError(f"rate must be > -1/tau for simple interest, got rate={rate!r}, tau={tau!r}")
        return _scalar(1.0 / growth)
    return _scalar(1.0 / compounded_growth(r, kind, tau_))


# ----------------------------------------------------------------------------------------------
# bonds and curves
# ----------------------------------------------------------------------------------------------

def coupon_schedule(maturity: float, coupon_rate: float, frequency: int = 2,
                    principal: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Cash-flow times and amounts of a fixed-coupon bond issued or priced on a coupon date.

    Coupons ``principal * coupon_rate / frequency`` fall at ``maturity - k / frequency`` for
    ``k = 0, 1, ...`` while that is > 0 (a schedule built backwards from maturity, the first
    period possibly short but paying a full coupon, a simplification: a real bond, and QuantLib's
    ``FixedRateBond``, accrue a short first coupon pro rata); the principal is paid at
    ``maturity``. A zero-coupon bond (``coupon_rate = 0``) has one cash flow.

    >>> coupon_schedule(1.5, 0.08)
    (array([0.5, 1. , 1.5]), array([  4.,   4., 104.]))
    """
    f = _frequency(frequency)
    if not np.isfinite(maturity) or maturity <= 0:
        raise ValueError(f"maturity must be > 0, got {maturity!r}")
    if not np.isfinite(coupon_rate) or coupon_rate < 0:
        raise ValueError(f"coupon_rate must be >= 0, got {coupon_rate!r}")
    if not np.isfinite(principal) or principal <= 0:
        raise ValueError(f"principal must be > 0, got {principal!r}")
    if coupon_rate == 0:
        return np.array([float(maturity)]), np.array([float(principal)])
    k = np.arange(int(np.floor(maturity * f + 1e-9)) + 1)
    times = maturity - k / f
    times = np.sort(times[times > _TOL])
    flows = np.full(times.shape, principal * coupon_rate / f)
    flows[-1] += principal
    return times, flows


def _log_discount(T: np.ndarray, r: np.ndarray, t: np.ndarray, interpolation: str) -> np.ndarray:
    """``ln Z(0, t)`` on the curve (no validation; ``0 <= t <= T[-1]``)."""
    t = np.asarray(t, dtype=np.float64)
    if interpolation == "linear-zero":
        rate = np.interp(t, T, r)  # flat r_1 before the first node
        return -rate * t
    knots = np.concatenate(([0.0], T))
    logs = np.concatenate(([0.0], -r * T))
    return np.interp(t, knots, logs)


def discount(maturities: ArrayLike, zero_rates: ArrayLike, t: ArrayLike,
             interpolation: str = "linear-zero") -> np.ndarray:
    """Discount factor ``Z(0, t) = e^{-r(t) t}`` on an interpolated zero curve (eq-curves-interp).

    ``t`` in ``[0, maturities[-1]]`` (any shape); see the module docstring for the two
    interpolations. At the nodes it returns ``exp(-zero_rates * maturities)`` exactly.

    >>> round(float(discount([1.0, 2.0], [0.05, 0.06], 1.5)), 6)  # r(1.5) = 5.5%: e^{-0.0825}
    0.920811
    """
    T, r = _curve(maturities, zero_rates)
    times = _times(t, T)
    return _scalar(np.exp(_log_discount(T, r, times, _interpolation(interpolation))))


def zero_rate(maturities: ArrayLike, zero_rates: ArrayLike, t: ArrayLike,
              interpolation: str = "linear-zero") -> np.ndarray:
    """Continuously compounded zero rate ``r(t) = -ln Z(0, t) / t`` on the interpolated curve.

    ``t`` in ``(0, maturities[-1]]``; at ``t = 0`` it returns the first node's rate (the limit).
    """
    T, r = _curve(maturities, zero_rates)
    times = _times(t, T)
    interpolation = _interpolation(interpolation)
    safe = np.where(times > 0, times, T[0])
    return _scalar(-_log_discount(T, r, safe, interpolation) / safe)


def curve_price(maturities: ArrayLike, zero_rates: ArrayLike, maturity: float, coupon_rate: float,
                frequency: int = 2, principal: float = 100.0, interpolation: str = "linear-zero") -> float:
    """Price of a fixed-coupon bond on the curve: ``sum_i c_i Z(0, t_i)`` (eq-rates-coupon-bond).

    The schedule is :func:`coupon_schedule`; the discount factors are :func:`discount`.
    """
    times, flows = coupon_schedule(maturity, coupon_rate, frequency, principal)
    T, r = _curve(maturities, zero_rates)
    _times(times, T, "maturity")
    rates_at = -_log_discount(T, r, times, _interpolation(interpolation)) / times
    return float(bond_price(flows, times, rates_at))


def bootstrap(maturities: ArrayLike, prices: ArrayLike, coupon_rates: ArrayLike, frequency: int = 2,
              principal: float = 100.0, interpolation: str = "linear-zero") -> np.ndarray:
    """Continuously compounded zero rates at ``maturities`` implied by bond prices (eq-curves-bootstrap).

    Instrument ``i`` is a bond maturing at ``maturities[i]`` (years, strictly increasing) with
    annual coupon rate ``coupon_rates[i]`` (0 for a zero-coupon bond) paid ``frequency`` times a
    year (schedule :func:`coupon_schedule`), principal ``principal``, and cash (dirty) price
    ``prices[i]``. Instruments are taken in order of maturity; when instrument ``i`` is reached,
    the zero rates at the earlier nodes are known:

    * cash flows at or before the previous node ``maturities[i-1]`` are discounted on the curve
      built so far (interpolated between nodes, flat zero rate before the first node);
    * cash flows after it, including the last one, are discounted on the curve extended by the
      unknown node ``(maturities[i], r_i)`` with the chosen ``interpolation``. If the last cash
      flow is the only one, ``r_i`` has a closed form (eq-curves-bootstrap); otherwise the price
      is strictly decreasing in ``r_i`` and ``r_i`` is its root (Brent's method, to ~1e-15).

    A price at or below the value of an instrument's already-discounted cash flows would need a
    non-positive discount factor: ``ValueError`` naming the instrument.

    >>> r = bootstrap([0.25, 0.5, 1.0, 1.5, 2.0], [97.5, 94.9, 90.0, 96.0, 101.6],
    ...               [0, 0, 0, 0.08, 0.12])                       # Hull, Table 4.3
    >>> [round(100 * float(x), 3) for x in r]
    [10.127, 10.469, 10.536, 10.681, 10.808]
    """
    T = _vector(maturities, "maturities")
    if np.any(T <= 0):
        raise ValueError(f"maturities must be > 0 (years from today), got {maturities!r}")
    if np.any(np.diff(T) <= 0):
        raise ValueError(f"maturities must be strictly increasing, got {maturities!r}")
    P = _vector(prices, "prices")
    c = _vector(coupon_rates, "coupon_rates")
    if P.shape != T.shape or c.shape != T.shape:
        raise ValueError(f"maturities, prices and coupon_rates must have the same length, "
                         f"got {T.size}, {P.size}, {c.size}")
    if np.any(P <= 0):
        raise ValueError(f"prices must be > 0, got {prices!r}")
    if np.any(c < 0):
        raise ValueError(f"coupon_rates must be >= 0, got {coupon_rates!r}")
    interpolation = _interpolation(interpolation)
    zero = np.empty_like(T)
    for i in range(T.size):
        times, flows = coupon_schedule(T[i], c[i], frequency, principal)
        previous = T[i - 1] if i > 0 else 0.0
        known = times <= previous + _TOL
        known_value = 0.0
        if np.any(known):
            known_value = float(np.sum(flows[known] * np.exp(_log_discount(T[:i], zero[:i], times[known],
                                                                           interpolation))))
        remaining = P[i] - known_value
        if remaining <= 0:
            raise ValueError(
                f"prices[{i}] = {P[i]:g} (instrument {i}, maturity {T[i]:g}) implies a non-positive discount "
                f"factor: its cash flows up to maturity {previous:g} are already worth {known_value:.6g}")
        new_t, new_c = times[~known], flows[~known]
        if new_t.size == 1:  # only the final cash flow is new: closed form
            zero[i] = float(zcb_yield(remaining / new_c[0], 0.0, T[i]))
            continue

        def excess(x, i=i, new_t=new_t, new_c=new_c, remaining=remaining):
            zero[i] = x
            return float(np.sum(new_c * np.exp(_log_discount(T[:i + 1], zero[:i + 1], new_t,
                                                             interpolation)))) - remaining

        lo, hi = -0.5, 0.5
        for _ in range(64):  # the price falls from +inf to 0 as r_i rises: a bracket exists
            if excess(lo) > 0 and excess(hi) < 0:
                break
            lo, hi = (lo - 1.0, hi) if excess(lo) <= 0 else (lo, 2 * hi + 1.0)
        else:  # pragma: no cover - unreachable for finite input
            raise ValueError(f"prices[{i}]: no zero rate in [{lo:g}, {hi:g}] reproduces the price")
        zero[i] = brentq(excess, lo, hi, xtol=1e-16, rtol=1e-15, maxiter=200)
    return zero


def forward_rates(maturities: ArrayLike, zero_rates: ArrayLike) -> np.ndarray:
    """Forward rates between consecutive nodes (eq-rates-forward), the first from today.

    ``f_k = (r_k T_k - r_{k-1} T_{k-1}) / (T_k - T_{k-1})`` with ``T_0 = 0``: the continuously
    compounded rate for borrowing over ``[T_{k-1}, T_k]`` fixed today. Same shape as the input.

    >>> [round(float(x), 4) for x in forward_rates([1.0, 2.0], [0.03, 0.04])]
    [0.03, 0.05]
    """
    T, r = _curve(maturities, zero_rates)
    knots = np.concatenate(([0.0], T))
    logs = np.log(zcb_price(np.concatenate(([0.0], r)), 0.0, knots))
    return -np.diff(logs) / np.diff(knots)


def instantaneous_forward(maturities: ArrayLike, zero_rates: ArrayLike, t: ArrayLike,
                          interpolation: str = "linear-zero") -> np.ndarray:
    """Instantaneous forward rate ``f(0, t) = -d ln Z(0, t) / dt`` on the interpolated curve (eq-curves-inst-forward).

    ``"linear-zero"``: ``f = r(t) + t r'(t)``, affine on each segment and discontinuous at the
    nodes (a saw-tooth); ``"log-linear-discount"``: piecewise constant, equal to
    :func:`forward_rates` on each segment. At a node the segment to the right is used (the last
    node uses the last segment). ``t`` in ``[0, maturities[-1]]``.

    >>> f = instantaneous_forward([1.0, 2.0], [0.03, 0.04], [0.5, 1.0, 2.0])  # r + t r'
    >>> [round(float(x), 4) for x in f]
    [0.03, 0.04, 0.06]
    """
    T, r = _curve(maturities, zero_rates)
    times = _times(t, T)
    interpolation = _interpolation(interpolation)
    knots = np.concatenate(([0.0], T))
    segment = np.clip(np.searchsorted(knots, times, side="right"), 1, T.size)  # (knots[s-1], knots[s]]
    if interpolation == "log-linear-discount":
        return _scalar(forward_rates(T, r)[segment - 1])
    rates_knots = np.concatenate(([r[0]], r))
    slope = np.diff(rates_knots) / np.diff(knots)
    return _scalar(np.interp(times, T, r) + times * slope[segment - 1])


def par_yield(maturities: ArrayLike, zero_rates: ArrayLike, maturity: float, frequency: int = 2,
              interpolation: str = "linear-zero") -> float:
    """Coupon rate that makes a bond maturing at ``maturity`` worth par (eq-curves-par-yield).

    ``c = m (1 - Z(0, T)) / sum_i Z(0, t_i)`` with coupon dates ``t_i`` from
    :func:`coupon_schedule` (``m = frequency``), discount factors from :func:`discount`. The
    result is compounded ``m`` times a year, as coupons are.

    >>> round(100 * par_yield([0.5, 1.0, 1.5, 2.0], [0.05, 0.058, 0.064, 0.068], 2.0), 2)  # Hull
    6.87
    """
    m = _frequency(frequency)
    times, _ = coupon_schedule(maturity, 1.0, m, 1.0)
    z = discount(maturities, zero_rates, times, interpolation)
    return float(m * (1.0 - z[-1]) / np.sum(z))


def fra_value(maturities: ArrayLike, zero_rates: ArrayLike, T1: float, T2: float, fixed_rate: float,
              notional: float = 1.0, interpolation: str = "linear-zero") -> float:
    """Value today of a forward rate agreement receiving ``fixed_rate`` on ``[T1, T2]`` (eq-curves-fra).

    The FRA pays ``notional * (fixed_rate - R_F) * tau`` at ``T2``, ``tau = T2 - T1``, with the
    rates simply compounded over ``tau``; ``R_F = (Z(0, T1) / Z(0, T2) - 1) / tau`` is the simple
    forward rate on the curve, so the value is ``notional (fixed_rate - R_F) tau Z(0, T2)``.
    Requires ``0 <= T1 < T2 <= maturities[-1]``.
    """
    if not (np.isfinite(T1) and np.isfinite(T2)) or not 0 <= T1 < T2:
        raise ValueError(f"T1 and T2 must satisfy 0 <= T1 < T2, got T1={T1!r}, T2={T2!r}")
    z1, z2 = discount(maturities, zero_rates, [T1, T2], interpolation)
    tau = T2 - T1
    forward = (z1 / z2 - 1.0) / tau
    return float(notional * (fixed_rate - forward) * tau * z2)


# ----------------------------------------------------------------------------------------------
# yield to maturity, duration and convexity
# ----------------------------------------------------------------------------------------------

def _cash(cash_times, cash_flows) -> tuple[np.ndarray, np.ndarray]:
    t = _vector(cash_times, "cash_times")
    c = _vector(cash_flows, "cash_flows")
    if t.shape != c.shape:
        raise ValueError(f"cash_times and cash_flows must have the same length, got {t.size} and {c.size}")
    if np.any(t <= 0):
        raise ValueError(f"cash_times must be > 0, got {cash_times!r}")
    if np.any(c < 0) or not np.any(c > 0):
        raise ValueError(f"cash_flows must be >= 0 with at least one > 0, got {cash_flows!r}")
    return t, c


def _discounting(t: np.ndarray, y: float, kind) -> np.ndarray:
    """Discount factors at yield ``y``: ``e^{-yt}`` or ``(1 + y/m)^{-mt}``."""
    if kind == "continuous":
        return np.exp(-y * t)
    if y <= -kind:
        raise ValueError(f"yield_ must be > -m = {-kind} for compounding m = {kind}, got {y!r}")
    with np.errstate(over="ignore"):  # near y = -m the price is +inf, which root finding handles
        return np.exp(-kind * t * np.log1p(y / kind))


def _yield_kind(compounding):
    kind = _compounding(compounding)
    if kind == "simple":
        raise ValueError("compounding must be 'continuous' or an int m >= 1 for a bond yield, got 'simple'")
    return kind


def price_from_yield(cash_times: ArrayLike, cash_flows: ArrayLike, yield_: float,
                     compounding: Compounding = "continuous") -> float:
    """Bond price ``P(y) = sum_i c_i d_i(y)`` at one yield for every cash flow (eq-curves-ytm).

    ``d_i = e^{-y t_i}`` (``"continuous"``) or ``(1 + y/m)^{-m t_i}`` (int ``m``).
    """
    t, c = _cash(cash_times, cash_flows)
    return float(np.sum(c * _discounting(t, float(yield_), _yield_kind(compounding))))


def yield_to_maturity(cash_times: ArrayLike, cash_flows: ArrayLike, price: float,
                      compounding: Compounding = "continuous") -> float:
    """The yield ``y`` with ``P(y) = price`` (eq-curves-ytm); unique, as ``P`` is strictly decreasing.

    >>> round(100 * yield_to_maturity([0.5, 1, 1.5, 2], [3, 3, 3, 103], 98.39), 2)  # Hull 4.4
    6.76
    """
    t, c = _cash(cash_times, cash_flows)
    kind = _yield_kind(compounding)
    if not np.isfinite(price) or price <= 0:
        raise ValueError(f"price must be > 0, got {price!r}")

    def excess(y):
        return float(np.sum(c * _discounting(t, y, kind))) - price

    lo = -0.5 if kind == "continuous" else -kind * (1 - 1e-9)
    if kind == "continuous":
        while excess(lo) < 0:
            lo -= 1.0
    elif excess(lo) < 0:
        raise ValueError(f"price {price!r} is above every price the cash flows reach for yields > -m")
    hi = 0.5
    while excess(hi) > 0:
        hi = 2 * hi + 1.0
    return float(brentq(excess, lo, hi, xtol=1e-16, rtol=1e-15, maxiter=200))


class Duration(NamedTuple):
    """Macaulay duration (years) and modified duration ``-P'(y)/P`` (eq-curves-duration)."""

    macaulay: float
    modified: float


def duration(cash_times: ArrayLike, cash_flows: ArrayLike, yield_: float,
             compounding: Compounding = "continuous") -> Duration:
    """Macaulay and modified duration of cash flows at a yield (eq-curves-duration).

    Macaulay ``D = sum_i t_i c_i d_i / P``, the present-value-weighted mean time. Modified
    ``D* = -P'(y) / P``: equal to ``D`` for continuous compounding, ``D / (1 + y/m)`` for a
    yield compounded ``m`` times a year.

    >>> round(duration(np.arange(1, 7) / 2, [5] * 5 + [105], 0.12).macaulay, 3)  # Hull Table 4.6
    2.653
    """
    t, c = _cash(cash_times, cash_flows)
    kind = _yield_kind(compounding)
    y = float(yield_)
    pv = c * _discounting(t, y, kind)
    mac = float(np.sum(t * pv) / np.sum(pv))
    modified = mac if kind == "continuous" else mac / (1.0 + y / kind)
    return Duration(mac, modified)


def convexity(cash_times: ArrayLike, cash_flows: ArrayLike, yield_: float,
              compounding: Compounding = "continuous") -> float:
    """Convexity ``C = P''(y) / P`` of cash flows at a yield (eq-curves-convexity).

    Continuous: ``C = sum_i t_i^2 c_i e^{-y t_i} / P``; compounded ``m`` times a year:
    ``C = sum_i t_i (t_i + 1/m) c_i (1 + y/m)^{-m t_i} / (P (1 + y/m)^2)``. This is QuantLib's
    ``BondFunctions.convexity``.
    """
    t, c = _cash(cash_times, cash_flows)
    kind = _yield_kind(compounding)
    y = float(yield_)
    pv = c * _discounting(t, y, kind)
    if kind == "continuous":
        return float(np.sum(t * t * pv) / np.sum(pv))
    return float(np.sum(t * (t + 1.0 / kind) * pv) / (np.sum(pv) * (1.0 + y / kind) ** 2))


# ----------------------------------------------------------------------------------------------
# figures and explorer: pure plotting functions fig -> drawing (utils.widgets)
# ----------------------------------------------------------------------------------------------

HULL_MATURITIES = (0.25, 0.5, 1.0, 1.5, 2.0)
HULL_COUPONS = (0.0, 0.0, 0.0, 0.08, 0.12)
HULL_PRICES = (97.5, 94.9, 90.0, 96.0, 101.6)


def _draw_curves(ax_zero, ax_fwd, T, r, interpolation, color, label, dense) -> None:
    ax_zero.plot(dense, 100 * zero_rate(T, r, dense, interpolation), color=color, label=label)
    ax_zero.plot(T, 100 * r, "o", color=color, ms=4)
    ax_fwd.plot(dense, 100 * instantaneous_forward(T, r, dense, interpolation), color=color, label=label)


def _label_curve_axes(ax_zero, ax_fwd, forward_label: str) -> None:
    """Axis labels and legends of the two-panel zero / forward curve figures."""
    ax_zero.set_xlabel("maturity $T$ (years)")
    ax_zero.set_ylabel("zero rate $r(T)$ (%, cont.)")
    ax_zero.legend(fontsize="x-small")
    ax_fwd.set_xlabel("maturity $t$ (years)")
    ax_fwd.set_ylabel(forward_label)
    ax_fwd.legend(fontsize="x-small")


def plot_bootstrap(fig, p_025: float = 97.5, p_05: float = 94.9, p_1: float = 90.0, p_15: float = 96.0,
                   p_2: float = 101.6, interpolation: str = "linear-zero") -> None:
    """Explorer: bootstrap Hull's five bonds from their prices; zero and forward curves.

    The instruments are those of Hull's Table 4.3 (zero-coupon 0.25, 0.5, 1 year; 8% 1.5-year
    and 12% 2-year semiannual bonds, principal 100); the arguments are their prices. Left: the
    bootstrapped zero rates (dots) and the interpolated zero curve, with Hull's prices in grey
    for reference. Right: the instantaneous forward curve and the node-to-node forwards (steps).
    Prices that admit no curve are reported in the panel instead of raising.
    """
    ax_zero, ax_fwd = fig.subplots(1, 2)
    dense = np.linspace(0.0, HULL_MATURITIES[-1], 401)
    T = np.array(HULL_MATURITIES)
    base = bootstrap(T, HULL_PRICES, HULL_COUPONS, interpolation=interpolation)
    _draw_curves(ax_zero, ax_fwd, T, base, interpolation, "#999999", "Hull's prices", dense)
    try:
        r = bootstrap(T, [p_025, p_05, p_1, p_15, p_2], HULL_COUPONS, interpolation=interpolation)
    except ValueError as err:
        ax_zero.text(0.02, 0.5, f"no curve:\n{err}", transform=ax_zero.transAxes, fontsize="x-small", wrap=True)
    else:
        _draw_curves(ax_zero, ax_fwd, T, r, interpolation, PALETTE[0], "these prices", dense)
        knots = np.concatenate(([0.0], T))
        ax_fwd.stairs(100 * forward_rates(T, r), knots, baseline=None, color=PALETTE[1], ls="--",
                      label="node to node")
    _label_curve_axes(ax_zero, ax_fwd, "forward rate $f(0, t)$ (%, cont.)")


def plot_interpolation(fig, maturities=HULL_MATURITIES, zero_rates=None) -> None:
    """Figure: the two interpolations on one zero curve, and what each does to the forwards.

    Left: zero curves (nodes as dots). Right: instantaneous forwards, saw-tooth for linear zero
    rates and steps for log-linear discount factors. Default: Hull's bootstrapped curve.
    """
    T = np.asarray(maturities, dtype=float)
    r = bootstrap(T, HULL_PRICES, HULL_COUPONS) if zero_rates is None else np.asarray(zero_rates, float)
    ax_zero, ax_fwd = fig.subplots(1, 2)
    dense = np.linspace(0.0, T[-1], 801)
    for interpolation, color in zip(INTERPOLATIONS, PALETTE):
        _draw_curves(ax_zero, ax_fwd, T, r, interpolation, color, interpolation, dense)
    _label_curve_axes(ax_zero, ax_fwd, "instantaneous forward $f(0, t)$ (%)")


def shift_errors(cash_times: ArrayLike, cash_flows: ArrayLike, yield_: float, shifts_bp: ArrayLike,
                 compounding: Compounding = "continuous") -> dict[str, np.ndarray]:
    """Relative errors of the first- and second-order price approximations for yield shifts.

    For each shift ``dy`` (basis points; 1 bp = 1e-4): the exact ``P(y + dy)``, the duration
    approximation ``P (1 - D* dy)`` and the duration-convexity approximation
    ``P (1 - D* dy + C dy^2 / 2)`` (eq-curves-taylor); returns their errors as fractions of
    today's price, ``|approx - exact| / P(y)`` (the error of the predicted return ``dP / P``), under
    keys ``"first"`` and ``"second"``, and the exact prices under ``"exact"``.
    """
    t, c = _cash(cash_times, cash_flows)
    dy = _vector(shifts_bp, "shifts_bp") * 1e-4
    P = price_from_yield(t, c, yield_, compounding)
    d_mod = duration(t, c, yield_, compounding).modified
    conv = convexity(t, c, yield_, compounding)
    exact = np.array([price_from_yield(t, c, yield_ + s, compounding) for s in dy])
    first = P * (1 - d_mod * dy)
    second = first + P * conv * dy**2 / 2
    return {"exact": exact, "first": np.abs(first - exact) / P, "second": np.abs(second - exact) / P}


def plot_shift_errors(fig, maturity: float = 10.0, coupon_rate: float = 0.05, yield_: float = 0.05,
                      compounding: Compounding = 2) -> None:
    """Figure: error of the duration and duration-convexity approximations for shifts of 1-300 bp.

    Left: the exact price against the yield shift, and the two approximations. Right: their
    relative errors on log-log axes for rises and falls of the yield, with the leading-order
    slopes 2 (first order, the missing convexity term) and 3 (second order, the missing
    third-derivative term) as guides.
    """
    times, flows = coupon_schedule(maturity, coupon_rate, 2, 100.0)
    ax_price, ax_err = fig.subplots(1, 2)
    grid_bp = np.linspace(-300, 300, 121)
    P = price_from_yield(times, flows, yield_, compounding)
    d_mod = duration(times, flows, yield_, compounding).modified
    conv = convexity(times, flows, yield_, compounding)
    dy = grid_bp * 1e-4
    exact = [price_from_yield(times, flows, yield_ + s, compounding) for s in dy]
    ax_price.plot(grid_bp, exact, color=PALETTE[0], lw=2.2, label="exact $P(y + \\Delta y)$")
    ax_price.plot(grid_bp, P * (1 - d_mod * dy), "--", color=PALETTE[1], label="duration")
    ax_price.plot(grid_bp, P * (1 - d_mod * dy + conv * dy**2 / 2), ":", color=PALETTE[2],
                  label="duration + convexity")
    ax_price.set_xlabel("parallel shift $\\Delta y$ (basis points)")
    ax_price.set_ylabel("price (per 100)")
    ax_price.legend(fontsize="x-small")
    shifts = np.logspace(0, np.log10(300), 40)
    for sign, style in ((1, "-"), (-1, "--")):
        err = shift_errors(times, flows, yield_, sign * shifts, compounding)
        word = "rise" if sign > 0 else "fall"
        ax_err.loglog(shifts, err["first"], style, color=PALETTE[1], label=f"duration, {word}")
        ax_err.loglog(shifts, np.maximum(err["second"], 1e-16), style, color=PALETTE[2],
                      label=f"+ convexity, {word}")
    ax_err.set_xlabel("size of the shift $|\\Delta y|$ (basis points)")
    ax_err.set_ylabel("error of $\\Delta P / P$")
    ax_err.legend(fontsize="x-small", ncol=2)
