"""eval_mode: the model evaluates in eval mode and goes back to the mode it was in."""

import pytest
from torch import nn

from rsft.models.inference import eval_mode


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_the_mode_even_on_error(training):
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train(training)
    with eval_mode(model):
        assert not model.training and not model[1].training
    assert model.training is training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("a failing forward")
    assert model.training is training and model[1].training is training
