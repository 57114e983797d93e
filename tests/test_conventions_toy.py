import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.conventions import contraction_factor, gd_trajectory, plot_gd_toy


def test_known_values():
    np.testing.assert_allclose(gd_trajectory(h=1.0, y=2.0, lr=0.5, steps=2), [0.0, 1.0, 1.5])
    assert contraction_factor(2.0, 0.25) == 0.0


@given(h=st.floats(0.1, 10), y=st.floats(-10, 10), lr=st.floats(1e-3, 1.0), w0=st.floats(-10, 10))
def test_error_contracts_by_the_factor(h, y, lr, w0):
    errors = gd_trajectory(h, y, lr, steps=5, w0=w0) - y / h
    factor = contraction_factor(h, lr)
    np.testing.assert_allclose(errors[1:], factor * errors[:-1], rtol=1e-9, atol=1e-9 * (1 + abs(errors).max()))


@pytest.mark.parametrize("kwargs, name", [({"h": 0.0}, "h"), ({"lr": -1.0}, "lr"), ({"steps": -1}, "steps")])
def test_rejects_bad_arguments(kwargs, name):
    args = {"h": 1.0, "y": 1.0, "lr": 0.1, "steps": 3} | kwargs
    with pytest.raises(ValueError, match=name):
        gd_trajectory(**args)


def test_plot_draws_two_panels():
    import matplotlib.pyplot as plt

    fig = plt.figure()
    plot_gd_toy(fig, lr=0.3)
    assert len(fig.axes) == 2
