"""Hypernetwork training options as A1111 names them: the layer weights initialization changes the weights'
statistics as named, dropout acts only while training, and both are saved in the `.pt` as A1111 saves them."""

from __future__ import annotations

import math

import pytest
import torch

from core.errors import InvalidRequest
from engine.prompts.hypernetwork import new_hypernetwork
from engine.prompts.hypernetwork_files import read_hypernetwork
from engine.training.hypernetwork import HypernetworkTrainer, HypernetworkTraining, check_hypernetwork_options
from engine.training.loop import LoopOptions, LoopState

WIDTH = 320  # the first Linear of (1, 2, 1): 320 → 640, fan_in 320, fan_out 640


def _first_linear(weight_init: str, activation: str = "relu") -> torch.Tensor:
    network = new_hypernetwork(
        "n",
        [WIDTH],
        activation=activation,
        weight_init=weight_init,
        generator=torch.Generator().manual_seed(3),
    )
    return network.layers[WIDTH][0].linear[0].weight.detach()


@pytest.mark.parametrize(
    ("weight_init", "std", "uniform_bound"),
    [
        ("Normal", 0.01, None),  # A1111: normal_(std=0.01)
        ("XavierUniform", math.sqrt(2 / (WIDTH + 2 * WIDTH)), math.sqrt(6 / (WIDTH + 2 * WIDTH))),
        ("XavierNormal", math.sqrt(2 / (WIDTH + 2 * WIDTH)), None),
        ("KaimingUniform", math.sqrt(2 / WIDTH), math.sqrt(6 / WIDTH)),  # relu gain √2, fan_in
        ("KaimingNormal", math.sqrt(2 / WIDTH), None),
    ],
)
def test_weight_initialization_gives_the_named_distribution(weight_init, std, uniform_bound):
    weight = _first_linear(weight_init)
    assert abs(float(weight.std()) - std) < 0.03 * std, (weight_init, float(weight.std()), std)
    assert abs(float(weight.mean())) < 0.05 * std
    largest = float(weight.abs().max())
    if uniform_bound is not None:  # uniform: nothing beyond the bound, and values close to it
        assert uniform_bound * 0.99 < largest <= uniform_bound
    else:  # normal: 204,800 draws reach well past √3·std, a uniform's edge
        assert largest > 3.5 * std


def test_dropout_acts_only_in_training_and_is_saved_as_a1111_saves_it(engine, settings, tmp_path):
    model = engine.base_model(None)
    options = HypernetworkTraining(
        "drop", LoopOptions(steps=1, learning_rate="1e-5"), dropout=(0, 0.5, 0), weight_init="XavierNormal"
    )
    check_hypernetwork_options(options)
    trainer = HypernetworkTrainer(model, options)
    module = trainer.hypernetwork.modules()[0]
    assert module.training and any(isinstance(layer, torch.nn.Dropout) for layer in module.linear)
    width = next(iter(trainer.hypernetwork.layers))
    x = torch.randn(2, 5, width, generator=torch.Generator().manual_seed(0)).to(model.device)
    with torch.no_grad():
        assert not torch.equal(module(x), module(x))  # training: a new dropout mask each pass
    path = trainer.save(tmp_path / "drop.pt", LoopState(step=1), 1)
    assert module.training  # training goes on in training mode after a save
    data = torch.load(path, weights_only=True)
    assert data["use_dropout"] is True and data["dropout_structure"] == [0.0, 0.5, 0.0]
    assert data["last_layer_dropout"] is True and data["weight_initialization"] == "XavierNormal"
    loaded = read_hypernetwork(path)
    used = loaded.layers[width][0].to(model.device)
    assert not used.training
    with torch.no_grad():
        assert torch.equal(used(x), used(x))  # generating: no dropout
        module.eval()
        assert torch.allclose(used(x), module(x))  # the same weights, dropout off


def test_bad_dropout_structures_are_refused_by_name():
    loop = LoopOptions(steps=1, learning_rate="1e-5")
    for dropout, message in (
        ((0, 0.3), "3 values"),
        ((0, 1.0, 0), "from 0 to <1"),
        ((0.1, 0.3, 0), "start and end with 0"),
    ):
        with pytest.raises(InvalidRequest, match=f"dropout_structure: .*{message}"):
            check_hypernetwork_options(HypernetworkTraining("x", loop, dropout=dropout))
    with pytest.raises(InvalidRequest, match="weight_init"):
        check_hypernetwork_options(HypernetworkTraining("x", loop, weight_init="Uniform"))
