"""Continuous interest, discount factors and zero-coupon bonds (chapter ``08_interest_rates``).

Mirrors section 5.1.1 of the research notes ("An Introduction to Quantitative Finance -- Interest
Rates", eqs 21-24, Definitions 1-4), which follows the early chapters of Blyth (2014). Everything is
NumPy, float64, vectorised and broadcasting: each argument may be a number or an array, and the
result has the broadcast shape of the arguments (a NumPy scalar when all are scalars).

Conventions: rates are per year and, unless the name says otherwise (``r_m``), continuously
compounded; times are in years. Functions that take a rate ``r`` for discounting also accept a
callable ``s -> r(s)``, a deterministic short-rate curve; then ``Z(t, T) = exp(-int_t^T r(s) ds)``
(eq-rates-zcb-varying), integrated with adaptive quadrature.

Bad input raises ``ValueError`` (or ``TypeError`` for the wrong kind of object) naming the argument
and the accepted range: non-finite numbers, ``m <= 0``, ``r_m <= -m``, ``T < t``, negative horizons.

The plotting functions at the end (``plot_*``) are the chapter's explorers (``utils.widgets``).
"""

from __future__ import annotations

from typing import Callable, Union

import numpy as np
from numpy.typing import ArrayLike

from .plotting import PALETTE

__all__ = [
    "growth_factor",
    "compounded_growth",
    "to_compounded",
    "to_continuous",
    "money_market",
    "zcb_price",
    "zcb_yield",
    "forward_rate",
    "bond_price",
    "plot_compounding",
    "plot_pull_to_par",
    "plot_replication",
]

RateCurve = Callable[[float], float]
Rate = Union[ArrayLike, RateCurve]


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------

def _array(x, name: str) -> np.ndarray:
    """``x`` as a float64 array; ``TypeError`` unless it is real-valued, ``ValueError`` unless finite."""
    if callable(x):
        raise TypeError(f"{name} must be a real number or an array of real numbers, got a callable")
    raw = np.asarray(x)
    if raw.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got a complex value")
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real number or an array of real numbers, got {x!r}")
    a = raw.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (no nan or inf), got {x!r}")
    return a


def _positive(x, name: str) -> np.ndarray:
    a = _array(x, name)
    if np.any(a <= 0):
        raise ValueError(f"{name} must be > 0, got {x!r}")
    return a


def _nonnegative(x, name: str) -> np.ndarray:
    a = _array(x, name)
    if np.any(a < 0):
        raise ValueError(f"{name} must be >= 0, got {x!r}")
    return a


def _above_minus_m(r_m: np.ndarray, m: np.ndarray, raw) -> None:
    if np.any(r_m <= -m):
        raise ValueError(f"r_m must be > -m (a rate at or below -m wipes out the deposit), got r_m={raw!r}")


def _broadcast(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError as err:
        raise ValueError(f"{name_a} (shape {a.shape}) and {name_b} (shape {b.shape}) do not broadcast") from err


def _scalar(a: np.ndarray):
    """0-d arrays become NumPy scalars, larger arrays are returned as they are."""
    return a[()] if isinstance(a, np.ndarray) and a.ndim == 0 else a


def _integral(r: RateCurve, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``int_a^b r(s) ds`` elementwise over the broadcast of ``a`` and ``b`` (adaptive quadrature)."""
    from scipy.integrate import quad

    a, b = np.broadcast_arrays(a, b)
    out = np.empty(a.shape, dtype=np.float64)
    for index in np.ndindex(a.shape):
        lo, hi = float(a[index]), float(b[index])
        if lo == hi:
            out[index] = 0.0
            continue
        value, _ = quad(lambda s: float(r(s)), lo, hi, epsabs=0.0, epsrel=1e-13, limit=200)
        out[index] = value
    if not np.all(np.isfinite(out)):
        raise ValueError("r must be a finite rate curve: its integral over [t, T] is not finite")
    return out


def _log_discount(r: Rate, t: np.ndarray, T: np.ndarray, name: str = "r") -> np.ndarray:
    """``ln Z(t, T) = -int_t^T r`` for a constant rate (array) or a callable curve."""
    if callable(r):
        return -_integral(r, t, T)
    rate = _array(r, name)
    horizon = T - t
    _broadcast(name, rate, "T - t", horizon)
    return -rate * horizon


def _exp(x: np.ndarray) -> np.ndarray:
    """``np.exp`` without the overflow warning: callers check the result with :func:`_finite_result`."""
    with np.errstate(over="ignore"):
        return np.exp(x)


def _expm1(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.expm1(x)


def _finite_result(value: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{what} overflows float64 for these arguments")
    return value


# ----------------------------------------------------------------------------------------------
# growth and compounding (eqs 21-23)
# ----------------------------------------------------------------------------------------------

def growth_factor(r: ArrayLike, T: ArrayLike) -> np.ndarray:
    """Continuous-compounding growth factor ``e^{rT}``: notes eq 21 with ``N = 1`` (eq-rates-continuous).

    ``r``: continuously compounded rate per year, finite; ``T``: horizon in years, ``T >= 0``.
    Shapes broadcast; the result has the broadcast shape.

    >>> float(growth_factor(0.05, 2.0))  # e^{0.1}
    1.1051709180756477
    """
    rate, horizon = _array(r, "r"), _nonnegative(T, "T")
    _broadcast("r", rate, "T", horizon)
    return _scalar(_finite_result(_exp(rate * horizon), "growth_factor"))


def compounded_growth(r_m: ArrayLike, m: ArrayLike, T: ArrayLike) -> np.ndarray:
    """Growth factor ``(1 + r_m/m)^{mT}`` of ``m``-times-a-year compounding (eq-rates-discrete).

    Evaluated as ``exp(m T log1p(r_m / m))``, which stays accurate for huge ``m`` where the naive
    ``(1 + r_m/m) ** (m*T)`` loses every digit (``1 + r_m/m`` rounds to 1). ``m > 0`` (need not be
    an integer), ``r_m > -m``, ``T >= 0``; shapes broadcast.

    >>> float(compounded_growth(0.10, 2, 1.0))  # 1.05^2
    1.1025
    """
    rate, freq, horizon = _array(r_m, "r_m"), _positive(m, "m"), _nonnegative(T, "T")
    _broadcast("r_m", rate, "m", freq)
    _broadcast("m", freq, "T", horizon)
    _above_minus_m(rate, freq, r_m)
    return _scalar(_finite_result(_exp(freq * horizon * np.log1p(rate / freq)), "compounded_growth"))


def to_compounded(r: ArrayLike, m: ArrayLike) -> np.ndarray:
    """Rate ``r_m = m (e^{r/m} - 1)`` compounded ``m`` times a year equivalent to continuous ``r``.

    Notes eq 23 (eq-rates-to-compounded), evaluated with ``expm1``. ``m > 0``; shapes broadcast.

    >>> round(float(to_compounded(0.08, 4)), 6)  # 8% continuous = 8.08% quarterly
    0.080805
    """
    rate, freq = _array(r, "r"), _positive(m, "m")
    _broadcast("r", rate, "m", freq)
    return _scalar(_finite_result(freq * _expm1(rate / freq), "to_compounded"))


def to_continuous(r_m: ArrayLike, m: ArrayLike) -> np.ndarray:
    """Continuous rate ``r = m ln(1 + r_m/m)`` equivalent to ``r_m`` compounded ``m`` times a year.

    The inverse of :func:`to_compounded` (eq-rates-to-continuous), evaluated with ``log1p``.
    ``m > 0``, ``r_m > -m``; shapes broadcast.

    >>> round(float(to_continuous(0.10, 2)), 6)  # 10% semiannual = 9.758% continuous
    0.09758
    """
    rate, freq = _array(r_m, "r_m"), _positive(m, "m")
    _broadcast("r_m", rate, "m", freq)
    _above_minus_m(rate, freq, r_m)
    return _scalar(freq * np.log1p(rate / freq))


# ----------------------------------------------------------------------------------------------
# money market account and zero-coupon bonds (Definitions 3-4, eq 24)
# ----------------------------------------------------------------------------------------------

def money_market(r: Rate, t: ArrayLike) -> np.ndarray:
    """Money market account ``M_t = e^{rt}`` with ``M_0 = 1`` (notes Definition 3, eq-rates-money-market).

    ``r``: a constant continuously compounded rate (number or array) or a callable short-rate
    curve ``s -> r(s)``, then ``M_t = exp(int_0^t r(s) ds)``. ``t >= 0`` in years; shapes broadcast.

    >>> float(money_market(0.05, 0.0))
    1.0
    """
    time = _nonnegative(t, "t")
    log_m = -_log_discount(r, np.zeros_like(time), time)
    return _scalar(_finite_result(_exp(log_m), "money_market"))


def zcb_price(r: Rate, t: ArrayLike, T: ArrayLike) -> np.ndarray:
    """Price at time ``t`` of a zero-coupon bond paying 1 at ``T``: ``Z(t, T) = e^{-r(T-t)}``.

    Notes Definition 4, eq 24 (eq-rates-zcb). ``r``: a constant rate (number or array) or a callable
    short-rate curve, then ``Z(t, T) = exp(-int_t^T r(s) ds)`` (eq-rates-zcb-varying). Requires
    ``T >= t``; ``Z(T, T) = 1``. Shapes of ``r``, ``t``, ``T`` broadcast.

    >>> float(zcb_price(0.05, 0.0, 0.0)), round(float(zcb_price(0.05, 0.0, 1.0)), 6)
    (1.0, 0.951229)
    """
    start, maturity = _array(t, "t"), _array(T, "T")
    _broadcast("t", start, "T", maturity)
    if np.any(maturity < start):
        raise ValueError(f"T must be >= t (the bond cannot mature before the valuation date), got t={t!r}, T={T!r}")
    return _scalar(_finite_result(_exp(_log_discount(r, start, maturity)), "zcb_price"))


def zcb_yield(price: ArrayLike, t: ArrayLike, T: ArrayLike) -> np.ndarray:
    """Continuously compounded yield ``y(t, T) = -ln Z(t, T) / (T - t)`` of a ZCB price (eq-rates-yield).

    ``price > 0`` (a ZCB price, per unit paid at ``T``); ``T > t`` strictly. Shapes broadcast.

    >>> round(float(zcb_yield(zcb_price(0.03, 1.0, 4.0), 1.0, 4.0)), 12)
    0.03
    """
    p = _positive(price, "price")
    start, maturity = _array(t, "t"), _array(T, "T")
    _broadcast("t", start, "T", maturity)
    _broadcast("price", p, "T", maturity)
    if np.any(maturity <= start):
        raise ValueError(f"T must be > t for a yield (it divides by T - t), got t={t!r}, T={T!r}")
    return _scalar(-np.log(p) / (maturity - start))


def forward_rate(r_or_curve: Rate, t: ArrayLike, T1: ArrayLike, T2: ArrayLike) -> np.ndarray:
    """Forward rate for ``[T1, T2]`` seen at ``t``: ``f = ln(Z(t, T1) / Z(t, T2)) / (T2 - T1)`` (eq-rates-forward).

    ``r_or_curve``: a constant continuously compounded rate (number or array; the curve is then flat
    and ``f = r``) or a callable short-rate curve ``s -> r(s)``, for which ``f`` is the average of
    ``r`` over ``[T1, T2]``. Requires ``t <= T1 < T2``; shapes broadcast.

    >>> round(float(forward_rate(lambda s: 0.02 + 0.01 * s, 0.0, 1.0, 3.0)), 12)  # mean of r on [1, 3]
    0.04
    """
    start, t1, t2 = _array(t, "t"), _array(T1, "T1"), _array(T2, "T2")
    _broadcast("t", start, "T1", t1)
    _broadcast("T1", t1, "T2", t2)
    if np.any(t1 < start):
        raise ValueError(f"T1 must be >= t, got t={t!r}, T1={T1!r}")
    if np.any(t2 <= t1):
        raise ValueError(f"T2 must be > T1, got T1={T1!r}, T2={T2!r}")
    if callable(r_or_curve):
        log_ratio = _integral(r_or_curve, t1, t2)  # ln Z(t,T1) - ln Z(t,T2) = int_T1^T2 r
    else:
        log_ratio = _log_discount(r_or_curve, start, t1, "r_or_curve") - _log_discount(r_or_curve, start, t2,
                                                                                      "r_or_curve")
    return _scalar(log_ratio / (t2 - t1))


def bond_price(cashflows: ArrayLike, times: ArrayLike, r: Rate) -> np.ndarray:
    """Time-0 price of a bond paying ``cashflows[..., i]`` at ``times[i]``: ``sum_i c_i Z(0, t_i)`` (eq-rates-coupon-bond).

    ``times >= 0`` in years, broadcasting against ``cashflows`` along the last axis (the cash
    flows). ``r``: a flat continuously compounded rate (a number), zero rates broadcasting against
    ``times`` (shape ``(n,)``: one rate per cash flow; shape ``(k, 1)``: ``k`` flat curves, result
    ``(k,)``), or a callable short-rate curve. Returns the sum over the last axis.

    >>> round(float(bond_price([3, 3, 3, 103], [0.5, 1.0, 1.5, 2.0], [0.05, 0.058, 0.064, 0.068])), 2)
    98.39
    """
    cf = _array(cashflows, "cashflows")
    when = _nonnegative(times, "times")
    if cf.ndim == 0 or when.ndim == 0:
        raise ValueError(f"cashflows and times must be arrays with the cash flows on the last axis, "
                         f"got shapes {cf.shape} and {when.shape}")
    _broadcast("cashflows", cf, "times", when)
    if callable(r):
        discount = _exp(-_integral(r, np.zeros_like(when), when))
    else:
        rate = _array(r, "r")
        _broadcast("r", rate, "times", when)
        discount = _exp(-rate * when)
    _broadcast("cashflows", cf, "discount factors", discount)
    return _scalar(_finite_result(np.sum(cf * discount, axis=-1), "bond_price"))


# ----------------------------------------------------------------------------------------------
# explorers: pure plotting functions fig -> drawing (utils.widgets)
# ----------------------------------------------------------------------------------------------

def plot_compounding(fig, r: float = 0.05, T: float = 10.0, log10_m: float = 1.0) -> None:
    """Explorer 1: ``m``-times compounding vs continuous growth, and the error against ``m``.

    Left: the account value ``(1 + r/m)^{floor(m t)}`` (a staircase) and ``e^{rt}`` over ``[0, T]``.
    Right: the gap ``e^{rT} - (1 + r/m)^{mT}`` against ``m`` (log-log), its first-order approximation
    ``r^2 T e^{rT} / (2m)`` (eq-rates-error), and the naive ``(1 + r/m) ** (mT)``, whose rounding
    error grows like ``m T u e^{rT}`` (``u`` the unit roundoff) until ``1 + r/m`` rounds to 1
    (from ``m ~ r/u``). A vertical line, labelled in the legend, marks the ``m`` of the left panel.
    """
    m = 10.0 ** log10_m
    ax_path, ax_err = fig.subplots(1, 2)
    t = np.linspace(0.0, T, 600)
    ax_path.plot(t, growth_factor(r, t), color=PALETTE[0], label="continuous $e^{rt}$")
    steps = np.floor(m * t + 1e-9)
    ax_path.plot(t, np.exp(steps * np.log1p(r / m)), color=PALETTE[1], lw=1.2,
                 label=f"$m = {m:.3g}$ per year")
    ax_path.set_xlabel("time $t$ (years)")
    ax_path.set_ylabel("account value $N_t / N$")
    ax_path.legend(fontsize="small")
    ms = np.logspace(0, 17, 120)
    exact = growth_factor(r, T)
    gap = np.abs(exact - compounded_growth(r, ms, T))
    with np.errstate(all="ignore"):
        naive = np.abs(exact - (1.0 + r / ms) ** (ms * T))
    approx = r * r * T * exact / (2.0 * ms)
    tiny = 1e-18
    ax_err.loglog(ms, np.maximum(gap, tiny), color=PALETTE[0], label="log1p formula")
    ax_err.loglog(ms, np.maximum(naive, tiny), color=PALETTE[3], lw=0.8, label="naive $(1+r/m)^{mT}$")
    ax_err.loglog(ms, np.maximum(approx, tiny), "--", color=PALETTE[2], label=r"$r^2 T e^{rT}/(2m)$")
    unit_roundoff = np.finfo(np.float64).eps / 2
    ax_err.loglog(ms, ms * T * unit_roundoff * exact, ":", color=PALETTE[3], label=r"rounding $mTu\,e^{rT}$")
    ax_err.axvline(m, color=PALETTE[1], lw=0.8, label=f"this $m$ = {m:.3g} (left panel)")
    ax_err.set_ylim(1e-17, max(10.0 * float(np.max(naive[np.isfinite(naive)])), 1e-10))
    ax_err.set_xlabel("compounding frequency $m$ (per year)")
    ax_err.set_ylabel("$|e^{rT} - (1+r/m)^{mT}|$")
    ax_err.legend(fontsize="x-small")


def plot_pull_to_par(fig, r: float = 0.05, T: float = 10.0) -> None:
    """Explorer 2: pull to par ``t -> Z(t, T)`` on ``[0, T]`` and the discount curve ``T' -> Z(0, T')``."""
    ax_path, ax_curve = fig.subplots(1, 2)
    t = np.linspace(0.0, T, 300)
    ax_path.plot(t, zcb_price(r, t, T), color=PALETTE[0])
    ax_path.axhline(1.0, color="#777777", lw=0.8, ls=":")
    ax_path.plot([T], [1.0], "o", color=PALETTE[1], label="$Z(T, T) = 1$")
    ax_path.plot([0.0], [zcb_price(r, 0.0, T)], "s", color=PALETTE[2], label=f"$Z(0, T)$ = {zcb_price(r, 0.0, T):.3f}")
    ax_path.set_xlabel("valuation time $t$ (years)")
    ax_path.set_ylabel("ZCB price $Z(t, T)$")
    ax_path.legend(fontsize="small")
    maturities = np.linspace(0.0, 30.0, 300)
    ax_curve.plot(maturities, zcb_price(r, 0.0, maturities), color=PALETTE[0])
    ax_curve.axvline(T, color=PALETTE[1], lw=0.8)
    ax_curve.axhline(1.0, color="#777777", lw=0.8, ls=":")
    ax_curve.set_xlabel("maturity $T$ (years)")
    ax_curve.set_ylabel("discount factor $Z(0, T)$")


def plot_replication(fig, r: float = 0.05, T: float = 5.0, market_price: float = 0.70) -> None:
    """Explorer 3: the two portfolios of the replication argument, and the arbitrage when mispriced.

    Left: portfolio A (one ZCB, fair value ``Z(t, T)``, a wide pale band), portfolio B (cash
    ``Z(0, T)`` in the money market, value ``Z(0, T) e^{rt}``, a dark dashed line on top: the two
    coincide) and the bond's market price at 0. Right: the value
    ``(P - Z(0, T)) e^{rt}`` of the arbitrage (short the bond and deposit the proceeds if it is dear,
    the reverse if it is cheap) which locks in ``|P - Z(0, T)| e^{rT}`` at ``T``.
    """
    ax_val, ax_arb = fig.subplots(1, 2)
    t = np.linspace(0.0, T, 300)
    fair = zcb_price(r, 0.0, T)
    # A and B coincide: A is a wide pale band, B a dark dashed line drawn on top of it
    ax_val.plot(t, zcb_price(r, t, T), color=PALETTE[5], lw=6, alpha=0.45, solid_capstyle="butt",
                label="A: one ZCB, $Z(t,T)$", zorder=2)
    ax_val.plot(t, fair * money_market(r, t), "--", color=PALETTE[7], lw=1.2,
                label="B: cash $Z(0,T)e^{rt}$", zorder=3)
    ax_val.plot([0.0], [market_price], "o", color=PALETTE[1], label=f"market price $P$ = {market_price:.3f}")
    ax_val.set_xlabel("time $t$ (years)")
    ax_val.set_ylabel("portfolio value")
    ax_val.legend(fontsize="x-small")
    mispricing = market_price - fair
    value = np.abs(mispricing) * money_market(r, t)
    ax_arb.plot(t, value, color=PALETTE[1])
    ax_arb.axhline(0.0, color="#777777", lw=0.8)
    ax_arb.set_ylim(-0.02 * max(float(value[-1]), 0.05), 1.1 * max(float(value[-1]), 0.05))
    tolerance = 1e-12
    side = ("sell ZCB, deposit" if mispricing > tolerance else
            "buy ZCB, borrow" if mispricing < -tolerance else "fair price, no arbitrage")
    ax_arb.set_title(f"{side}: profit at $T$ = {abs(mispricing) * growth_factor(r, T):.4f}", fontsize="small")
    ax_arb.set_xlabel("time $t$ (years)")
    ax_arb.set_ylabel("arbitrage portfolio value")
