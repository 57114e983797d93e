"""A small, fast train/evaluate loop that returns its history as plain data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from . import default_progress
from .data import Split

__all__ = ["History", "evaluate", "train"]


@dataclass
class History:
    """What :func:`train` saw: one entry per evaluation step (plain lists, easy to plot or save)."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list]:
        return asdict(self)

    @property
    def final_test_accuracy(self) -> float:
        if not self.test_accuracy:
            raise ValueError("history is empty: train(...) ran no evaluation")
        return self.test_accuracy[-1]


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> dict[str, float]:
    """Mean cross-entropy ``loss`` and ``accuracy`` (fraction correct, in [0, 1]) of ``model`` on ``(x, y)``.

    ``x`` has shape ``(n, d)``, ``y`` shape ``(n,)`` with integer class labels.
    """
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same, non-zero number of examples, got {x.shape[0]} and {y.shape[0]}")
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size].to(dev), y[start:start + batch_size].to(dev)
        logits = model(xb)
        total_loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(dim=1) == yb).sum())
    model.train(was_training)
    return {"loss": total_loss / len(x), "accuracy": correct / len(x)}


def _make_optimizer(name: str, params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


def train(model: nn.Module, data: Split, *, steps: int = 500, batch_size: int = 64, lr: float = 0.05,
          optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0, eval_every: int | None = None,
          seed: int = 0, after_backward: Callable[[nn.Module, int], None] | None = None,
          after_step: Callable[[nn.Module, int], None] | None = None,
          progress: bool | None = None) -> History:
    """Train ``model`` in place with minibatch cross-entropy for ``steps`` optimizer steps.

    Minibatches are drawn by reshuffling the training set every epoch with a generator seeded by
    ``seed``, so the same seed gives the same run. Two hooks let a chapter change the update:
    ``after_backward(model, step)`` runs after ``loss.backward()`` and before the optimizer step
    (e.g. to mask gradients); ``after_step(model, step)`` runs after it (e.g. to re-apply a weight
    mask). The model is evaluated on the train and test sets every ``eval_every`` steps (default:
    10 evaluations per run) and after the last step. ``progress=None`` follows
    :func:`utils.default_progress`.
    """
    if not isinstance(data, Split):
        raise TypeError(f"data must be a utils.data.Split, got {type(data).__name__}")
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if eval_every is None:
        eval_every = max(1, steps // 10)
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be an int >= 1, got {eval_every!r}")
    progress = default_progress() if progress is None else progress

    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    x_train, y_train = data.x_train.to(dev, dtype), data.y_train.to(dev)
    x_test, y_test = data.x_test.to(dev, dtype), data.y_test.to(dev)
    opt = _make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay)
    generator = torch.Generator().manual_seed(seed)
    history = History()
    order, cursor = torch.randperm(len(x_train), generator=generator), 0

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc="training", leave=False)
    model.train()
    for step in range(1, steps + 1):
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(x_train), generator=generator), 0
        idx = order[cursor:cursor + batch_size].to(dev)
        cursor += batch_size
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward(model, step)
        opt.step()
        if after_step is not None:
            after_step(model, step)
        if step % eval_every == 0 or step == steps:
            on_train, on_test = evaluate(model, x_train, y_train), evaluate(model, x_test, y_test)
            history.step.append(step)
            history.train_loss.append(on_train["loss"])
            history.train_accuracy.append(on_train["accuracy"])
            history.test_loss.append(on_test["loss"])
            history.test_accuracy.append(on_test["accuracy"])
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return history
