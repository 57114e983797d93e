"""Lottery tickets: find them, test them, question them (``04_lottery``).

Frankle & Carbin {cite}`frankle2019lottery` find a *winning ticket* by
iterative magnitude pruning (IMP): train, remove a fraction ``p`` of the
weights each layer still has (the output layer at ``p / 2``), reset the
survivors to their initial values ``W0``, repeat. A ticket wins if, trained
alone from ``m * W0``, it reaches the dense network's minimum validation loss
no later (``j' <= j``) and with test accuracy no lower (``a' >= a``) at that
point (``eq-lottery-ticket`` in the chapter).

* masks: :func:`magnitude_masks` (one IMP pruning step, layer-wise),
  :func:`random_masks_like` (the random-mask control, same per-layer counts);
* training: :func:`split_validation` (a validation split separate from the
  test set), :func:`make_trainer` (masked training that records validation
  loss and test accuracy) and :func:`early_stopping` (the paper's
  early-stopping iteration and the accuracy there);
* the algorithm: :func:`iterative_magnitude_pruning` with ``reset`` in
  ``{"init", "random", "rewind"}`` (rewinding to step ``k``, Frankle et al.
  {cite}`frankle2020linear`);
* the chapter's experiments: :func:`lottery_experiment` (ticket vs random
  re-initialisation vs random mask vs dense vs SynFlow), :func:`summarize`,
  :func:`headline`, :func:`imp_schedule`, :func:`adjacent_pairs` /
  :func:`locality_ratio` (the spatial-prior test), :func:`genetic_search`
  (the notes' Research Question 1) and :func:`full_run` (full mode,
  ``python -m utils.lottery`` writes ``results/lottery.json``);
* figures: :func:`plot_paper_axes`, :func:`plot_round` (the explorer panel).

A mask is a ``dict[str, Tensor]`` keyed by parameter name (``"fc1.weight"``),
shaped like the parameter, holding 0 and 1. The prunable parameters are the
weights of the model's ``nn.Linear`` layers, in forward order; biases are
never pruned.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import matplotlib
import numpy as np
import torch
from torch import nn

from . import default_progress
from .data import Split
from .masking import check_masks
from .models import linear_layers
from .plotting import PALETTE
from .training import evaluate, train

__all__ = [
    "RESETS",
    "CONDITIONS",
    "CONDITION_COLORS",
    "prunable_weights",
    "density",
    "global_density",
    "imp_schedule",
    "magnitude_masks",
    "random_masks_like",
    "split_validation",
    "make_trainer",
    "early_stopping",
    "iterative_magnitude_pruning",
    "retrain",
    "lottery_experiment",
    "summarize",
    "headline",
    "adjacent_pairs",
    "locality_ratio",
    "crossover",
    "mutate",
    "genetic_search",
    "plot_paper_axes",
    "plot_round",
    "FULL_CONFIG",
    "mlp_factory",
    "full_run",
]

RESETS = ("init", "random", "rewind")
#: the four networks of the paper's Figs 3-4, plus SynFlow (pruned untrained)
CONDITIONS = ("dense", "ticket", "reinit", "random mask", "synflow")
CONDITION_COLORS = {"dense": PALETTE[7], "ticket": PALETTE[0],
                    "reinit": PALETTE[1], "random mask": PALETTE[2],
                    "synflow": PALETTE[3]}

Masks = dict[str, torch.Tensor]


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------

def _check_rate(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


def _check_int(value: int, name: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_masks_for(model: nn.Module, masks: Masks, name: str) -> Masks:
    """``masks``: one 0/1 tensor per linear-layer weight of ``model``, shaped
    like it (:func:`utils.masking.check_masks`), and no layer missing."""
    check_masks(masks, model, types=(nn.Linear,))
    weights = prunable_weights(model)
    if set(masks) != set(weights):
        raise ValueError(f"{name} must have exactly the keys {list(weights)}, "
                         f"got {list(masks)}")
    return masks


# ---------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------

def prunable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of the ``nn.Linear`` layers, ``{"fc1.weight": W1, ...}``.

    In forward order; these are the keys of every mask. Raises ``ValueError``
    for a model without a linear layer.

    >>> from utils.models import mlp
    >>> list(prunable_weights(mlp([4, 3, 2])))
    ['fc1.weight', 'fc2.weight']
    """
    return {f"{name}.weight": layer.weight
            for name, layer in linear_layers(model)}


def density(masks: Masks) -> dict[str, float]:
    """Fraction of weights kept in each layer, ``{name: kept / total}``.

    >>> density({"fc1.weight": torch.tensor([[1., 0.], [0., 0.]])})
    {'fc1.weight': 0.25}
    """
    check_masks(masks)
    return {k: float(m.sum()) / m.numel() for k, m in masks.items()}


def global_density(masks: Masks) -> float:
    """Fraction of all prunable weights kept (the paper's ``P_m``)."""
    check_masks(masks)
    kept = sum(float(m.sum()) for m in masks.values())
    return kept / sum(m.numel() for m in masks.values())


def imp_schedule(sizes: list[int], rounds: int, rate: float = 0.2,
                 output_rate: float | None = None) -> list[float]:
    """Percent of weights remaining after ``0..rounds`` rounds of IMP.

    Layer ``l`` of an MLP with widths ``sizes`` keeps
    ``N_l (1 - p_l)^k`` weights after ``k`` rounds, ``p_l = rate`` for
    hidden layers and ``output_rate`` (default ``rate / 2``) for the last
    (``eq-lottery-remaining``). LeNet-300-100 at 20% / 10%:

    >>> [round(x, 1) for x in imp_schedule([784, 300, 100, 10], 3)]
    [100.0, 80.1, 64.2, 51.4]
    """
    rate = _check_rate(rate, "rate")
    output_rate = rate / 2 if output_rate is None else \
        _check_rate(output_rate, "output_rate")
    rounds = _check_int(rounds, "rounds")
    if not isinstance(sizes, (list, tuple)) or len(sizes) < 2:
        raise ValueError(f"sizes must list at least 2 widths, got {sizes!r}")
    n = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    p = [rate] * (len(n) - 1) + [output_rate]
    return [100.0 * sum(nl * (1 - pl) ** k for nl, pl in zip(n, p)) / sum(n)
            for k in range(rounds + 1)]


def magnitude_masks(model: nn.Module, rate: float,
                    previous_masks: Masks | None = None,
                    output_rate: float | None = None, *,
                    rounds_done: int | None = None) -> Masks:
    """One step of layer-wise magnitude pruning (the paper's IMP step).

    Each layer removes ``rate`` of the weights it *still has* (those kept
    by ``previous_masks``), the last layer ``output_rate`` (default
    ``rate / 2``), by smallest ``|w|``. With ``rounds_done=k`` the count
    kept follows the exact schedule ``round(N_l (1 - p_l)^(k+1))``
    (``eq-lottery-remaining``), so that after ``n`` rounds every layer is
    within half a weight of ``N_l (1 - p_l)^n``; without it the count is
    ``n_alive - round(p_l n_alive)`` (rounding errors then compound, by at
    most ``0.5 / p_l`` weights). A pruned weight never revives, ties in
    ``|w|`` are broken by position (the first index is kept), and every
    layer keeps at least one weight. ``rate`` outside ``[0, 1)`` raises
    ``ValueError``. Returns float32 0/1 masks; the model is not changed.

    >>> from utils.models import mlp
    >>> net = mlp([4, 5, 2])
    >>> m = magnitude_masks(net, 0.4)
    >>> int(m["fc1.weight"].sum()), int(m["fc2.weight"].sum())   # 20-8, 10-2
    (12, 8)
    """
    rate = _check_rate(rate, "rate")
    output_rate = rate / 2 if output_rate is None else \
        _check_rate(output_rate, "output_rate")
    weights = prunable_weights(model)
    if previous_masks is not None:
        _check_masks_for(model, previous_masks, "previous_masks")
    if rounds_done is not None:
        rounds_done = _check_int(rounds_done, "rounds_done")
    names = list(weights)
    out: Masks = {}
    for i, (name, w) in enumerate(weights.items()):
        p = output_rate if i == len(names) - 1 else rate
        score = w.detach().abs().flatten().to(torch.float64)
        alive = torch.ones_like(score, dtype=torch.bool) \
            if previous_masks is None else previous_masks[name].flatten() > 0
        n_alive = int(alive.sum())
        if rounds_done is None:
            n_keep = n_alive - int(round(p * n_alive))
        else:
            n_keep = int(round(w.numel() * (1 - p) ** (rounds_done + 1)))
        n_keep = min(n_alive, max(1, n_keep))
        score = torch.where(alive, score, torch.full_like(score, -1.0))
        order = torch.argsort(score, descending=True, stable=True)
        keep = torch.zeros(score.numel(), dtype=torch.float32)
        keep[order[:n_keep]] = 1.0
        out[name] = keep.reshape(w.shape)
    return out


def random_masks_like(masks: Masks, seed: int) -> Masks:
    """Random masks with exactly the same number of kept weights per layer.

    The paper's random-pruning control (c): same per-layer densities,
    positions uniform at random, seeded by ``seed``.

    >>> m = {"fc1.weight": torch.tensor([[1., 0., 0.], [1., 1., 0.]])}
    >>> int(random_masks_like(m, seed=0)["fc1.weight"].sum())
    3
    """
    check_masks(masks)
    generator = torch.Generator().manual_seed(_check_int(seed, "seed"))
    out: Masks = {}
    for name, m in masks.items():
        k = int(m.sum())
        flat = torch.zeros(m.numel(), dtype=torch.float32)
        flat[torch.randperm(m.numel(), generator=generator)[:k]] = 1.0
        out[name] = flat.reshape(m.shape)
    return out


# ---------------------------------------------------------------------------
# training with early stopping on a validation split
# ---------------------------------------------------------------------------

def split_validation(data: Split, n_val: int, seed: int = 0
                     ) -> tuple[Split, tuple[torch.Tensor, torch.Tensor]]:
    """Hold out ``n_val`` training examples as a validation set.

    Returns ``(split, (x_val, y_val))``: ``split`` has the remaining
    training examples and the *unchanged* test set, so early stopping
    (on validation loss) never sees the test set, as in the paper.
    """
    if not isinstance(data, Split):
        raise TypeError(f"data must be a utils.data.Split, "
                        f"got {type(data).__name__}")
    n_val = _check_int(n_val, "n_val", 1)
    if n_val >= len(data.y_train):
        raise ValueError(f"n_val must be in [1, {len(data.y_train) - 1}] "
                         f"(fewer than the training examples), got {n_val}")
    generator = torch.Generator().manual_seed(_check_int(seed, "seed"))
    order = torch.randperm(len(data.y_train), generator=generator)
    val, tr = order[:n_val], order[n_val:]
    split = Split(data.x_train[tr], data.y_train[tr], data.x_test,
                  data.y_test, name=data.name)
    return split, (data.x_train[val], data.y_train[val])


def early_stopping(history: dict) -> dict[str, float]:
    """The paper's early-stopping point: the evaluation with minimum
    validation loss (first one on ties), its ``step`` and the test accuracy
    there.

    >>> early_stopping({"step": [10, 20, 30], "val_loss": [1.0, 0.5, 0.7],
    ...                 "test_accuracy": [0.5, 0.8, 0.9]})
    {'step': 20, 'test_accuracy': 0.8, 'val_loss': 0.5}
    """
    for key in ("step", "val_loss", "test_accuracy"):
        if key not in history or not len(history[key]):
            raise ValueError(f"history must have a non-empty {key!r} list")
    i = int(np.argmin(history["val_loss"]))
    return {"step": int(history["step"][i]),
            "test_accuracy": float(history["test_accuracy"][i]),
            "val_loss": float(history["val_loss"][i])}


TrainFn = Callable[..., dict]


def make_trainer(data: Split, val: tuple[torch.Tensor, torch.Tensor], *,
                 steps: int = 400, eval_every: int = 20, lr: float = 2e-3,
                 batch_size: int = 100, optimizer: str = "adam",
                 seed: int = 0) -> TrainFn:
    """A ``train_fn(model, masks, on_step=None)`` for
    :func:`iterative_magnitude_pruning`.

    It trains ``model`` **in place** with :func:`utils.training.train`
    (minibatch order seeded by ``seed``), keeping the pruned weights at 0
    (``W <- m * W`` before training and after every step), calls
    ``on_step(model, step)`` after each step, and every ``eval_every`` steps
    records the validation loss and accuracy and the test accuracy. Returns
    ``{"step", "val_loss", "val_accuracy", "test_accuracy", "early_stop"}``
    (plain lists; ``early_stop`` from :func:`early_stopping`).
    """
    if not isinstance(data, Split):
        raise TypeError(f"data must be a utils.data.Split, "
                        f"got {type(data).__name__}")
    x_val, y_val = val
    steps = _check_int(steps, "steps", 1)
    eval_every = _check_int(eval_every, "eval_every", 1)
    if eval_every > steps:
        raise ValueError(f"eval_every must be in [1, steps={steps}], "
                         f"got {eval_every}")

    def train_fn(model: nn.Module, masks: Masks | None,
                 on_step: Callable[[nn.Module, int], None] | None = None
                 ) -> dict:
        pairs = []
        if masks is not None:
            _check_masks_for(model, masks, "masks")
            weights = prunable_weights(model)
            pairs = [(weights[n], masks[n].to(weights[n])) for n in masks]
        record = {"step": [], "val_loss": [], "val_accuracy": [],
                  "test_accuracy": []}

        def remask() -> None:
            with torch.no_grad():
                for w, m in pairs:
                    w.mul_(m)

        def after_step(net: nn.Module, step: int) -> None:
            remask()
            if on_step is not None:
                on_step(net, step)
            if step % eval_every == 0:
                v = evaluate(net, x_val, y_val)
                t = evaluate(net, data.x_test, data.y_test)
                record["step"].append(step)
                record["val_loss"].append(v["loss"])
                record["val_accuracy"].append(v["accuracy"])
                record["test_accuracy"].append(t["accuracy"])

        remask()
        train(model, data, steps=steps, batch_size=batch_size, lr=lr,
              optimizer=optimizer, eval_every=steps, seed=seed,
              after_step=after_step, progress=False)
        record["early_stop"] = early_stopping(record)
        return record

    return train_fn


# ---------------------------------------------------------------------------
# iterative magnitude pruning
# ---------------------------------------------------------------------------

def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def iterative_magnitude_pruning(make_model: Callable[[int], nn.Module],
                                train_fn: TrainFn, rounds: int,
                                rate: float = 0.2,
                                output_rate: float | None = None,
                                reset: str = "init", rewind_step: int = 0,
                                seed: int = 0, progress: bool | None = True
                                ) -> dict[str, Any]:
    """Iterative magnitude pruning with resetting (Frankle & Carbin, Alg. 2).

    ``make_model(seed)`` builds a freshly initialised network ``f(x; W0)``;
    ``train_fn(model, masks, on_step=None)`` trains it in place and returns
    its history (see :func:`make_trainer`). Round 0 trains the dense
    network; each round ``k >= 1`` then prunes ``rate`` of the weights each
    hidden layer still has and ``output_rate`` (default ``rate / 2``) of the
    last layer's (:func:`magnitude_masks`, exact schedule), resets the
    weights and trains the masked network. ``reset``:

    * ``"init"``: back to ``W0`` (the winning-ticket procedure);
    * ``"random"``: a fresh initialisation ``make_model(seed + 1000 k)``
      every round;
    * ``"rewind"``: back to ``W_k``, the dense network's weights after
      ``rewind_step`` steps of round 0 (Frankle et al. 2020).

    Returns plain data: ``{"config": {...}, "rounds": [{"round", "masks",
    "density", "global_density", "history"}, ...]}`` (round 0 has
    all-ones masks). Bad arguments raise ``ValueError``.
    """
    if not callable(make_model) or not callable(train_fn):
        raise TypeError("make_model and train_fn must be callables")
    rounds = _check_int(rounds, "rounds", 0)
    rate = _check_rate(rate, "rate")
    output_rate = rate / 2 if output_rate is None else \
        _check_rate(output_rate, "output_rate")
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
    rewind_step = _check_int(rewind_step, "rewind_step")
    if reset != "rewind" and rewind_step != 0:
        raise ValueError(f"rewind_step must be 0 unless reset='rewind', "
                         f"got {rewind_step} with reset={reset!r}")
    seed = _check_int(seed, "seed")
    progress = default_progress() if progress is None else progress

    model = make_model(seed)
    init_state = _state(model)
    rewind_state = init_state
    captured: dict[str, dict] = {}

    def capture(net: nn.Module, step: int) -> None:
        if step == rewind_step:
            captured["state"] = _state(net)

    masks = {n: torch.ones_like(w, dtype=torch.float32)
             for n, w in prunable_weights(model).items()}
    out_rounds = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=rounds + 1, desc="IMP rounds", leave=False)
    for k in range(rounds + 1):
        if k > 0:
            masks = magnitude_masks(model, rate, masks, output_rate,
                                    rounds_done=k - 1)
            if reset == "random":
                model = make_model(seed + 1000 * k)
            else:
                model.load_state_dict(rewind_state)
        hook = capture if (k == 0 and reset == "rewind"
                           and rewind_step > 0) else None
        history = train_fn(model, masks, on_step=hook)
        if k == 0 and reset == "rewind" and rewind_step > 0:
            if "state" not in captured:
                raise ValueError(f"rewind_step={rewind_step} was never "
                                 "reached: train_fn ran fewer steps")
            rewind_state = captured["state"]
        out_rounds.append({
            "round": k,
            "masks": {n: m.clone() for n, m in masks.items()},
            "density": density(masks),
            "global_density": global_density(masks),
            "history": history})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return {"config": {"rounds": rounds, "rate": rate,
                       "output_rate": output_rate, "reset": reset,
                       "rewind_step": rewind_step, "seed": seed},
            "rounds": out_rounds}


def retrain(make_model: Callable[[int], nn.Module], train_fn: TrainFn,
            masks: Masks, seed: int) -> dict:
    """Train ``m * W0'`` with ``W0' = make_model(seed)``; return the history.

    With the ticket's seed this retrains the ticket; with another seed it
    is the paper's control (b), the same mask randomly re-initialised.
    """
    return train_fn(make_model(_check_int(seed, "seed")), masks)


# ---------------------------------------------------------------------------
# the chapter's experiment
# ---------------------------------------------------------------------------

REINIT_OFFSET = 10_000


def _synflow_masks(model: nn.Module, target: float) -> Masks:
    """SynFlow masks (100 iterations, global) at global density ``target``,
    scored on a zero-bias copy of ``model`` (biases break its conservation,
    chapter 3)."""
    from .models import zero_biases
    from .pruning import prune

    scored = zero_biases(copy.deepcopy(model))
    masks = prune(scored, "synflow", 1.0 / target, iterations=100)
    return {n: m.to(torch.float32) for n, m in masks.items()}


def lottery_experiment(make_model: Callable[[int], nn.Module],
                       train_fn: TrainFn, seeds: list[int], rounds: int,
                       rate: float = 0.2, output_rate: float | None = None,
                       synflow: bool = True, progress: bool | None = None
                       ) -> dict[str, Any]:
    """The paper's Figs 3-4 experiment at every IMP round, for each seed.

    Conditions at each round ``k`` (percent of weights remaining
    ``100 P_m``): ``"ticket"`` (IMP mask, reset to ``W0``; round 0 is the
    dense network, also recorded as ``"dense"`` at every level),
    ``"reinit"`` (same mask, new init ``make_model(seed + 10000)``),
    ``"random mask"`` (:func:`random_masks_like`, trained from ``W0``) and,
    with ``synflow``, ``"synflow"`` (SynFlow at initialisation at the same
    global density, trained from ``W0``: no pruning round needs training).
    Returns ``{"records": [...], "masks": {seed: [masks per round]},
    "histories": {seed: [ticket history per round]}}``; each record has
    ``seed, round, remaining`` (percent), ``condition, es_step,
    es_accuracy, final_accuracy``.
    """
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise ValueError(f"seeds must be a non-empty list, got {seeds!r}")
    progress = default_progress() if progress is None else progress
    records, all_masks, histories = [], {}, {}
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(seeds), desc="lottery seeds", leave=False)

    def add(seed, k, remaining, condition, history):
        es = history["early_stop"]
        records.append({"seed": seed, "round": k, "remaining": remaining,
                        "condition": condition, "es_step": es["step"],
                        "es_accuracy": es["test_accuracy"],
                        "final_accuracy": history["test_accuracy"][-1]})

    for seed in seeds:
        imp = iterative_magnitude_pruning(make_model, train_fn, rounds, rate,
                                          output_rate, seed=seed,
                                          progress=False)
        all_masks[seed] = [r["masks"] for r in imp["rounds"]]
        histories[seed] = [r["history"] for r in imp["rounds"]]
        dense = imp["rounds"][0]["history"]
        for r in imp["rounds"]:
            k, masks = r["round"], r["masks"]
            remaining = 100.0 * r["global_density"]
            add(seed, k, remaining, "dense", dense)
            add(seed, k, remaining, "ticket", r["history"])
            if k == 0:
                continue
            add(seed, k, remaining, "reinit",
                retrain(make_model, train_fn, masks, seed + REINIT_OFFSET))
            rand = random_masks_like(masks, seed=seed + k)
            add(seed, k, remaining, "random mask",
                retrain(make_model, train_fn, rand, seed))
            if synflow:
                model = make_model(seed)
                sf = _synflow_masks(model, r["global_density"])
                add(seed, k, remaining, "synflow", train_fn(model, sf))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return {"records": records, "masks": all_masks, "histories": histories}


def summarize(records: list[dict], key: str = "es_accuracy"
              ) -> dict[str, dict[str, np.ndarray]]:
    """Mean, min and max of ``key`` over seeds, per condition and round.

    Returns ``{condition: {"round", "remaining", "mean", "min", "max"}}``
    (arrays over the rounds present, in order).
    """
    if not records:
        raise ValueError("records must be a non-empty list")
    if key not in records[0]:
        raise ValueError(f"key must be one of {sorted(records[0])}, "
                         f"got {key!r}")
    out = {}
    for cond in dict.fromkeys(r["condition"] for r in records):
        rows = [r for r in records if r["condition"] == cond]
        ks = sorted({r["round"] for r in rows})
        vals = [[r[key] for r in rows if r["round"] == k] for k in ks]
        rem = [np.mean([r["remaining"] for r in rows if r["round"] == k])
               for k in ks]
        out[cond] = {"round": np.array(ks), "remaining": np.array(rem),
                     "mean": np.array([np.mean(v) for v in vals]),
                     "min": np.array([np.min(v) for v in vals]),
                     "max": np.array([np.max(v) for v in vals])}
    return out


# ---------------------------------------------------------------------------
# the spatial-prior test (MNIST-1D)
# ---------------------------------------------------------------------------

def adjacent_pairs(mask: torch.Tensor) -> int:
    """Kept connections whose right-hand input neighbour is kept too:
    ``sum_h sum_i m[h, i] m[h, i+1]`` for a first-layer mask
    ``(hidden, inputs)``.

    >>> adjacent_pairs(torch.tensor([[1., 1., 0., 1.], [1., 0., 1., 0.]]))
    1
    """
    if not isinstance(mask, torch.Tensor) or mask.ndim != 2:
        raise ValueError("mask must be a 2-D tensor (hidden units, inputs)")
    m = (mask != 0).to(torch.int64)
    return int((m[:, 1:] * m[:, :-1]).sum())


def locality_ratio(mask: torch.Tensor) -> float:
    """Observed :func:`adjacent_pairs` over its expectation when each unit's
    kept inputs are placed uniformly at random (same in-degree per unit).

    A unit with ``k`` of ``D`` inputs kept at random has
    ``(D - 1) k (k - 1) / (D (D - 1)) = k (k - 1) / D`` adjacent pairs on
    average (``eq-lottery-locality``), so the ratio is 1 for a random mask,
    > 1 when kept inputs cluster in space and < 1 when they spread out.
    ``nan`` when no unit has two kept inputs.
    """
    if not isinstance(mask, torch.Tensor) or mask.ndim != 2:
        raise ValueError("mask must be a 2-D tensor (hidden units, inputs)")
    k = (mask != 0).sum(1).to(torch.float64)
    expected = float((k * (k - 1)).sum()) / mask.shape[1]
    return math.nan if expected == 0 else adjacent_pairs(mask) / expected


# ---------------------------------------------------------------------------
# Research Question 1: a genetic algorithm over masks
# ---------------------------------------------------------------------------

def crossover(a: Masks, b: Masks, generator: torch.Generator) -> Masks:
    """A child mask with the parents' per-layer counts (which must match).

    Keeps every weight both parents keep and fills the rest of each layer's
    count at random from the weights exactly one parent keeps, so the
    density is preserved exactly.
    """
    check_masks(a)
    check_masks(b)
    if list(a) != list(b):
        raise ValueError("a and b must mask the same parameters")
    child: Masks = {}
    for name in a:
        x, y = a[name].flatten() > 0, b[name].flatten() > 0
        if x.shape != y.shape or int(x.sum()) != int(y.sum()):
            raise ValueError(f"a[{name!r}] and b[{name!r}] must have the "
                             "same shape and number of kept weights")
        both, either = x & y, x ^ y
        need = int(x.sum()) - int(both.sum())
        pool = torch.nonzero(either).flatten()
        pick = pool[torch.randperm(len(pool), generator=generator)[:need]]
        flat = both.to(torch.float32)
        flat[pick] = 1.0
        child[name] = flat.reshape(a[name].shape)
    return child


def mutate(masks: Masks, swaps: int, generator: torch.Generator) -> Masks:
    """Move ``swaps`` kept weights of each layer to pruned positions
    (fewer if the layer is too full or too empty); density is preserved."""
    check_masks(masks)
    swaps = _check_int(swaps, "swaps")
    out: Masks = {}
    for name, m in masks.items():
        flat = (m.flatten() > 0).to(torch.float32)
        on, off = torch.nonzero(flat).flatten(), \
            torch.nonzero(flat == 0).flatten()
        s = min(swaps, len(on), len(off))
        flat[on[torch.randperm(len(on), generator=generator)[:s]]] = 0.0
        flat[off[torch.randperm(len(off), generator=generator)[:s]]] = 1.0
        out[name] = flat.reshape(m.shape)
    return out


def _key(masks: Masks) -> bytes:
    return b"".join((m > 0).numpy().tobytes() for m in masks.values())


def genetic_search(make_model: Callable[[int], nn.Module],
                   fitness_fn: TrainFn, template: Masks, *,
                   population: int = 8, generations: int = 5,
                   elite: int = 4, swaps: int = 20, seed: int = 0,
                   progress: bool | None = None) -> dict[str, Any]:
    """A genetic algorithm over masks at the per-layer counts of
    ``template``, all trained from the same ``W0 = make_model(seed)``.

    Generation 0 is ``population`` random masks
    (:func:`random_masks_like`). Fitness is the best validation accuracy
    of ``fitness_fn(model, masks)`` (a short training run). Each generation
    keeps the ``elite`` fittest and fills the population with
    :func:`crossover` of two random elites followed by :func:`mutate`.
    Because ``W0`` is fixed, two masks are the same network only if they
    are equal (permuting hidden units of a mask alone does not permute
    ``W0``), so duplicates are detected exactly and re-mutated. Returns
    ``{"best": masks, "best_fitness", "fitness": [per generation, list],
    "trainings": int}``.
    """
    check_masks(template)
    population = _check_int(population, "population", 2)
    generations = _check_int(generations, "generations", 1)
    elite = _check_int(elite, "elite", 1)
    if elite >= population:
        raise ValueError(f"elite must be in [1, population - 1="
                         f"{population - 1}], got {elite}")
    seed = _check_int(seed, "seed")
    progress = default_progress() if progress is None else progress
    generator = torch.Generator().manual_seed(seed)
    w0 = _state(make_model(seed))

    def fitness(masks: Masks) -> float:
        model = make_model(seed)
        model.load_state_dict(w0)
        return float(max(fitness_fn(model, masks)["val_accuracy"]))

    pop = [random_masks_like(template, seed=seed * 1000 + i)
           for i in range(population)]
    scores = [fitness(m) for m in pop]
    trainings = population
    history = [sorted(scores, reverse=True)]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=generations - 1, desc="GA generations", leave=False)
    for _ in range(generations - 1):
        order = np.argsort(scores)[::-1][:elite]
        pop = [pop[i] for i in order]
        scores = [scores[i] for i in order]
        seen = {_key(m) for m in pop}
        while len(pop) < population:
            i, j = (0, 0) if elite == 1 else \
                torch.randperm(elite, generator=generator)[:2].tolist()
            child = mutate(crossover(pop[i], pop[j], generator), swaps,
                           generator)
            while _key(child) in seen:
                child = mutate(child, max(1, swaps), generator)
            seen.add(_key(child))
            pop.append(child)
            scores.append(fitness(child))
            trainings += 1
        history.append(sorted(scores, reverse=True))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    best = int(np.argmax(scores))
    return {"best": pop[best], "best_fitness": scores[best],
            "fitness": history, "trainings": trainings}


# ---------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------

def plot_paper_axes(axes, records: list[dict],
                    conditions: tuple[str, ...] = CONDITIONS[:4],
                    steps_per_iteration: int = 1) -> None:
    """Frankle & Carbin Figs 3-4 axes: ``axes[0]`` the early-stopping
    iteration, ``axes[1]`` the test accuracy (%) at early stopping, against
    the percent of weights remaining (log x, decreasing to the right); mean
    over seeds, error bars min to max."""
    for ax, key, label in ((axes[0], "es_step", "early-stop iteration"),
                           (axes[1], "es_accuracy",
                            "test accuracy at early stop (%)")):
        summary = summarize(records, key)
        scale = steps_per_iteration if key == "es_step" else 100.0
        for cond in conditions:
            if cond not in summary:
                continue
            s = summary[cond]
            mean, lo, hi = s["mean"] * scale, s["min"] * scale, \
                s["max"] * scale
            ax.errorbar(s["remaining"], mean, yerr=[mean - lo, hi - mean],
                        marker="o", ms=4, capsize=3, label=cond,
                        color=CONDITION_COLORS[cond],
                        ls="--" if cond == "dense" else "-")
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("percent of weights remaining")
        ax.set_ylabel(label)
    axes[0].legend(fontsize="small")


def plot_round(fig, round: int = 0, *, masks: list[Masks],
               histories: list[dict], eval_every: int = 1) -> None:
    """Explorer panel: the masks of IMP round ``round`` (one image per
    layer, kept weights dark) and the test-accuracy curves of rounds
    ``0..round`` (the current one bold)."""
    round = _check_int(round, "round")
    if round >= len(masks):
        raise ValueError(f"round must be in [0, {len(masks) - 1}], "
                         f"got {round}")
    names = list(masks[round])
    axes = fig.subplots(1, len(names) + 1,
                        gridspec_kw={"width_ratios": [1] * len(names) + [2]})
    for ax, name in zip(axes, names):
        m = masks[round][name]
        ax.imshow(m.numpy(), cmap="Greys", vmin=0, vmax=1, aspect="auto",
                  interpolation="nearest")
        ax.grid(False)
        ax.set_title(f"{name.split('.')[0]}: {100 * float(m.mean()):.1f}%",
                     fontsize="small")
        ax.set_xlabel("input unit", fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel("output unit", fontsize="small")
    ax = axes[-1]
    cmap = matplotlib.colormaps["viridis"]
    for k in range(round + 1):
        h = histories[k]
        ax.plot(h["step"], 100 * np.asarray(h["test_accuracy"]),
                color=cmap(k / max(1, len(masks) - 1)),
                lw=2.2 if k == round else 0.9,
                label=f"round {k}" if k in (0, round) else None)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize="small", loc="lower right")


# ---------------------------------------------------------------------------
# full mode: the experiment at the MNIST-1D authors' scale, saved to
# results/lottery.json (python -m utils.lottery)
# ---------------------------------------------------------------------------

#: the full-mode settings (the chapter prints them with the results)
FULL_CONFIG = {"n": 4000, "n_val": 400, "sizes": [40, 100, 100, 10],
               "steps": 1000, "eval_every": 20, "lr": 2e-3,
               "batch_size": 100, "rate": 0.2, "rounds": 12,
               "seeds": [0, 1, 2, 3, 4], "ga_seeds": [0, 1, 2],
               "ga_population": 20, "ga_generations": 12,
               "ga_elite": 10, "ga_swaps": 20, "ga_steps": 100,
               "reset_seeds": [0, 1, 2], "rewind_step": 20}


def mlp_factory(sizes: list[int]) -> Callable[[int], nn.Module]:
    """``make_model(seed)``: :func:`utils.models.mlp` with PyTorch's default
    initialisation drawn under ``torch.manual_seed(seed)``."""
    from .models import mlp

    def make_model(seed: int) -> nn.Module:
        torch.manual_seed(_check_int(seed, "seed"))
        return mlp(list(sizes))
    return make_model


def full_run(config: dict | None = None, progress: bool | None = None
             ) -> dict[str, Any]:
    """Run the chapter's experiments with ``config`` (default
    :data:`FULL_CONFIG`) and return plain data for ``results/lottery.json``:
    the records of :func:`lottery_experiment`, the first-layer locality per
    round and seed (ticket and a same-count random mask), the kept inputs
    per position and round (first seed), the IMP resets compared
    (``init``, ``random``, ``rewind``) and the genetic search against IMP
    at the last round's density with the same number of training steps."""
    from .data import load_mnist1d

    cfg = dict(FULL_CONFIG if config is None else config)
    data = load_mnist1d(seed=0, n=cfg["n"])
    split, val = split_validation(data, cfg["n_val"], seed=0)
    make_model = mlp_factory(cfg["sizes"])
    train_fn = make_trainer(split, val, steps=cfg["steps"],
                            eval_every=cfg["eval_every"], lr=cfg["lr"],
                            batch_size=cfg["batch_size"])
    out = lottery_experiment(make_model, train_fn, cfg["seeds"],
                             cfg["rounds"], cfg["rate"], progress=progress)
    locality = []
    for seed, rounds in out["masks"].items():
        for k, masks in enumerate(rounds[1:], start=1):
            rand = random_masks_like(masks, seed=seed + k)
            locality.append({"seed": seed, "round": k,
                             "ticket": locality_ratio(masks["fc1.weight"]),
                             "random": locality_ratio(rand["fc1.weight"])})
    first = cfg["seeds"][0]
    positions = [out["masks"][first][k]["fc1.weight"].sum(0).tolist()
                 for k in range(cfg["rounds"] + 1)]
    resets = []
    for reset in ("random", "rewind"):
        for seed in cfg["reset_seeds"]:
            imp = iterative_magnitude_pruning(
                make_model, train_fn, cfg["rounds"], cfg["rate"],
                reset=reset, seed=seed, progress=False,
                rewind_step=cfg["rewind_step"] if reset == "rewind" else 0)
            for r in imp["rounds"]:
                es = r["history"]["early_stop"]
                resets.append({"reset": reset, "seed": seed,
                               "round": r["round"],
                               "remaining": 100 * r["global_density"],
                               "es_step": es["step"],
                               "es_accuracy": es["test_accuracy"]})
    fitness_fn = make_trainer(split, val, steps=cfg["ga_steps"],
                              eval_every=cfg["ga_steps"] // 4, lr=cfg["lr"],
                              batch_size=cfg["batch_size"])
    ga = []
    for seed in cfg["ga_seeds"]:
        ticket = out["masks"][seed][-1]
        search = genetic_search(make_model, fitness_fn, ticket,
                                population=cfg["ga_population"],
                                generations=cfg["ga_generations"],
                                elite=cfg["ga_elite"], swaps=cfg["ga_swaps"],
                                seed=seed, progress=False)
        best = retrain(make_model, train_fn, search["best"], seed)
        ga.append({"seed": seed, "fitness": search["fitness"],
                   "trainings": search["trainings"],
                   "steps": search["trainings"] * cfg["ga_steps"],
                   "es_accuracy": best["early_stop"]["test_accuracy"],
                   "es_step": best["early_stop"]["step"],
                   "locality": locality_ratio(search["best"]["fc1.weight"])})
    return {"config": cfg, "records": out["records"], "locality": locality,
            "positions": positions, "resets": resets, "ga": ga}


if __name__ == "__main__":   # python -m utils.lottery
    from .results import save_results

    torch.set_num_threads(1)
    result = full_run()
    save_results("lottery", result, command="python -m utils.lottery",
                 seeds=FULL_CONFIG["seeds"])


def headline(records: list[dict]) -> dict[str, Any]:
    """The paper's three headline comparisons, from
    :func:`lottery_experiment` records (means over seeds).

    * ``es_ratio``: per pruned round, ticket early-stop step / dense;
    * ``ticket_ge_dense_down_to``: the lowest percent remaining down to
      which the ticket's accuracy at early stop is >= the dense network's
      at every level (``nan`` if not even at the first pruned level);
    * ``reinit_below_dense_from``: the highest percent remaining from which
      on the re-initialised ticket is below the dense network at every
      lower level (``nan`` if it is not below at the sparsest level).

    Also returns ``remaining`` and the mean accuracies per condition.
    """
    acc, es = summarize(records, "es_accuracy"), summarize(records, "es_step")
    for cond in ("dense", "ticket", "reinit"):
        if cond not in acc:
            raise ValueError(f"records must contain the condition {cond!r}")
    pruned = acc["ticket"]["round"] > 0
    remaining = acc["ticket"]["remaining"][pruned]
    dense_acc = acc["dense"]["mean"][pruned]
    ticket_acc = acc["ticket"]["mean"][pruned]
    reinit_acc = acc["reinit"]["mean"]
    down_to = math.nan
    for r, t, d in zip(remaining, ticket_acc, dense_acc):
        if t < d:
            break
        down_to = float(r)
    below_from = math.nan
    for r, a, d in zip(remaining[::-1], reinit_acc[::-1], dense_acc[::-1]):
        if a >= d:
            break
        below_from = float(r)
    return {"remaining": remaining,
            "es_ratio": es["ticket"]["mean"][pruned] / es["dense"]["mean"][
                pruned],
            "ticket_ge_dense_down_to": down_to,
            "reinit_below_dense_from": below_from,
            "accuracy": {c: s["mean"][s["round"] > 0] for c, s in acc.items()}}
