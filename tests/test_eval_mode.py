"""``eval_mode``: models in eval mode inside the block, their own modes restored after."""
import pytest
from torch import nn

from course_lib.models import eval_mode


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.BatchNorm1d(2))


def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def test_restored_after_a_normal_exit():
    model = _net().train()
    with eval_mode(model):
        assert not any(_modes(model))
    assert all(_modes(model))


def test_restored_after_an_exception_in_the_block():
    model = _net().train()
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(model):
            assert not model.training
            raise RuntimeError("boom")
    assert all(_modes(model))


def test_a_model_in_eval_mode_stays_in_eval_mode():
    model = _net().eval()
    with eval_mode(model):
        assert not any(_modes(model))
    assert not any(_modes(model))


def test_several_models_each_get_their_own_mode_back():
    a, b, c = _net().train(), _net().eval(), _net().train()
    with eval_mode(a, b, c):
        assert not any(_modes(a) + _modes(b) + _modes(c))
    assert all(_modes(a)) and not any(_modes(b)) and all(_modes(c))


def test_none_entries_are_skipped():
    model = _net().train()
    with eval_mode(None, model, None):
        assert not model.training
    assert model.training
    with eval_mode(None):
        pass


def test_the_same_model_twice_keeps_its_mode():
    model = _net().train()
    with eval_mode(model, model):
        assert not model.training
    assert model.training
