import pytest
import torch

import utils
from utils.data import load_digits_tensors
from utils.models import mlp
from utils.training import History, evaluate, train


@pytest.fixture(scope="module")
def digits():
    return load_digits_tensors(seed=0)


def _run(digits, **kwargs):
    utils.seed_everything(0)
    model = mlp([64, 32, 10])
    return model, train(model, digits, steps=kwargs.pop("steps", 150), progress=False, **kwargs)


def test_train_learns_digits(digits):
    model, history = _run(digits, steps=300)
    assert isinstance(history, History)
    assert history.step[-1] == 300 and len(history.step) == 10
    assert history.final_test_accuracy > 0.85          # chance is 0.10
    assert history.train_loss[-1] < history.train_loss[0]
    assert evaluate(model, digits.x_test, digits.y_test)["accuracy"] == history.final_test_accuracy


def test_train_is_deterministic_under_a_seed(digits):
    _, a = _run(digits, seed=5)
    _, b = _run(digits, seed=5)
    _, c = _run(digits, seed=6)
    assert a.to_dict() == b.to_dict()
    assert a.train_loss != c.train_loss


def test_hooks_run_every_step_in_order(digits):
    calls = []
    _run(digits, steps=7, after_backward=lambda m, s: calls.append(("backward", s)),
         after_step=lambda m, s: calls.append(("step", s)))
    assert calls == [(kind, s) for s in range(1, 8) for kind in ("backward", "step")]


def test_after_backward_can_freeze_a_layer(digits):
    utils.seed_everything(0)
    model = mlp([64, 32, 10])
    before = model.fc1.weight.detach().clone()

    def freeze_fc1(m, step):
        m.fc1.weight.grad.zero_()

    train(model, digits, steps=20, momentum=0.0, after_backward=freeze_fc1, progress=False)
    assert torch.equal(model.fc1.weight, before)


def test_adam_and_eval_every(digits):
    _, history = _run(digits, steps=40, optimizer="adam", lr=1e-3, eval_every=20)
    assert history.step == [20, 40]


@pytest.mark.parametrize("kwargs, name", [({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size"),
                                          ({"lr": 0.0}, "lr"), ({"lr": float("nan")}, "lr"),
                                          ({"momentum": 1.0}, "momentum"), ({"weight_decay": -1.0}, "weight_decay"),
                                          ({"eval_every": 0}, "eval_every"), ({"optimizer": "lbfgs"}, "optimizer")])
def test_train_rejects_bad_arguments(digits, kwargs, name):
    with pytest.raises(ValueError, match=name):
        train(mlp([64, 10]), digits, progress=False, **kwargs)


def test_train_rejects_data_that_is_not_a_split():
    with pytest.raises(TypeError, match="data"):
        train(mlp([64, 10]), (torch.zeros(2, 64), torch.zeros(2)), progress=False)


def test_evaluate_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="same"):
        evaluate(mlp([4, 2]), torch.zeros(3, 4), torch.zeros(2, dtype=torch.int64))


def test_empty_history_has_no_final_accuracy():
    with pytest.raises(ValueError, match="empty"):
        History().final_test_accuracy
