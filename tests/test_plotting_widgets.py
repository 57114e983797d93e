import ipywidgets
import matplotlib as mpl
import numpy as np
import pytest
import torch

from utils.plotting import BOOK_STYLE, heatmap, use_book_style
from utils.widgets import describe, explorer, grid, small_multiples


def test_book_style_is_opaque_for_dark_mode():
    use_book_style()
    assert mpl.rcParams["savefig.transparent"] is False
    assert mpl.colors.to_hex(mpl.rcParams["figure.facecolor"]) == "#ffffff"
    assert mpl.rcParams["axes.grid"] == BOOK_STYLE["axes.grid"]


def test_heatmap_is_symmetric_around_zero_and_accepts_tensors():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    image = heatmap(ax, torch.tensor([[1.0, -3.0], [0.5, 2.0]]), title="W")
    assert image.get_clim() == (-3.0, 3.0)
    assert ax.get_title() == "W"
    with pytest.raises(ValueError, match="2-D"):
        heatmap(ax, np.zeros(3))


def test_grid_and_describe():
    assert grid(a=[1, 2], b=["x", "y"]) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"},
                                            {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert describe({"lr": 0.12345, "scheme": "weight"}) == "lr=0.123, scheme=weight"
    with pytest.raises(ValueError, match="'a'"):
        grid(a=[])


def _plot(fig, scale=1.0, label="x"):
    ax = fig.subplots()
    ax.plot([0, 1], [0, scale], label=label)


def test_small_multiples_draws_one_panel_per_setting():
    fig = small_multiples(_plot, grid(scale=[1.0, 2.0, 3.0], label=["a"]), ncols=2)
    assert len(fig.subfigs) == 4              # a 2 x 2 grid for 3 settings, the last left empty
    drawn = [sub for sub in fig.subfigs if sub.axes]
    assert len(drawn) == 3
    assert [sub.axes[0].lines[0].get_ydata()[1] for sub in drawn] == [1.0, 2.0, 3.0]


def test_small_multiples_rejects_bad_input():
    with pytest.raises(ValueError, match="settings"):
        small_multiples(_plot, [])
    with pytest.raises(ValueError, match="ncols"):
        small_multiples(_plot, [{}], ncols=0)
    with pytest.raises(TypeError, match="plot_fn"):
        small_multiples("not callable", [{}])


def test_explorer_builds_an_interactive_with_the_controls():
    widget = explorer(_plot, {"scale": (0.0, 2.0, 0.5)}, fixed={"label": "y"})
    assert isinstance(widget, ipywidgets.interactive)
    assert [child.description for child in widget.children[:-1]] == ["scale"]
    with pytest.raises(ValueError, match="controls"):
        explorer(_plot, {})


def test_animation_draws_one_frame_per_value():
    import re

    from utils.widgets import animation

    calls = []

    def plot(fig, a, b):
        calls.append((a, b))
        fig.subplots().plot([0, 1], [0, a])

    html = animation(plot, "a", [1.0, 2.0, 3.0], fixed={"b": "x"}).data
    assert sorted(set(calls)) == [(1.0, "x"), (2.0, "x"), (3.0, "x")]
    assert len(re.findall(r"data:image/png;base64", html)) == 3
    assert 'type="range"' in html
    assert "font-awesome" not in html and "http" not in html  # plays offline: no CDN icons
    assert "\u25b6" in html  # the play button is a plain symbol


def test_animation_rejects_bad_input():
    from utils.widgets import animation

    def plot(fig, a):
        fig.subplots()

    with pytest.raises(ValueError, match="values"):
        animation(plot, "a", [1.0])
    with pytest.raises(ValueError, match="name"):
        animation(plot, "", [1.0, 2.0])
    with pytest.raises(ValueError, match="fixed"):
        animation(plot, "a", [1.0, 2.0], fixed={"a": 1})
    with pytest.raises(TypeError, match="plot_fn"):
        animation(None, "a", [1.0, 2.0])


def test_glue_figure_glues_under_the_name_and_closes_the_figure(monkeypatch):
    import matplotlib.pyplot as plt
    import myst_nb

    from utils.plotting import glue_figure

    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, obj, display=True: calls.append((name, obj, display)))
    fig = plt.figure()
    glue_figure("fig-test", fig)
    assert calls == [("fig-test", fig, True)]
    assert not plt.fignum_exists(fig.number)
