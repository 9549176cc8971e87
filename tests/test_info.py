import json

import pytest
import torch
from torch import nn

from dlbench.config import build, compose
from dlbench.data import DataShape
from dlbench.info import describe, info, layer_table, render
from dlbench.tasks import CLASSIFY, MODULAR
from dlbench.models import MODELS
from tests.conftest import dlbench
from tests.test_models import INPUT, TOKENS


def test_lenet_totals_match_a_hand_computation():
    report = info(compose(["model=lenet", "batch_size=8"]))  # Fashion-MNIST's shape, without reading it
    assert report["input_shape"] == [8, 1, 28, 28] and report["params"] == 61_706
    assert report["param_bytes"] == 4 * 61_706
    # 2 FLOPs (multiply, add) per multiply-accumulate; biases and activations are not counted
    convs = 2 * (6 * 28 * 28) * (1 * 5 * 5) + 2 * (16 * 10 * 10) * (6 * 5 * 5)
    dense = 2 * (400 * 120 + 120 * 84 + 84 * 10)
    assert report["flops_per_example"] == convs + dense == 833_040
    # every layer's output, float32, for the batch of 8
    outputs = 2 * 6 * 28 * 28 + 6 * 14 * 14 + 2 * 16 * 10 * 10 + 2 * 400 + 2 * 120 + 2 * 84 + 10
    assert report["activation_bytes"] == 4 * 8 * outputs
    assert report["top_flops"][0]["name"] == "3"  # the second convolution
    assert [layer["receptive_field"] for layer in report["layers"][:6]] == [5, 5, 6, 14, 14, 16]
    assert [layer["stride"] for layer in report["layers"][:6]] == [1, 1, 2, 2, 2, 4]


def test_receptive_field_and_stride_of_a_small_stack():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, dilation=2),
                          nn.Conv2d(2, 2, 3, stride=2))
    layers = layer_table(model, torch.zeros(1, 1, 32, 32))
    # 3; +1 step of 1 (pool 2), stride 2; +4 steps of 2 (3x3 dilated by 2 spans 5); +2 steps of 2, stride 4
    assert [(layer.receptive_field, layer.stride) for layer in layers] == [(3, 1), (4, 2), (12, 2), (16, 4)]


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.b(self.a(x)) + x  # the sum sees as far as its widest input


def test_receptive_field_follows_branches_and_residual_sums():
    model = nn.Sequential(Residual(), nn.Conv2d(1, 1, 1), nn.AdaptiveAvgPool2d(1))
    layers = {layer.name: layer for layer in layer_table(model, torch.zeros(1, 1, 10, 10))}
    assert (layers["0.a"].receptive_field, layers["0.b"].receptive_field) == (3, 5)
    assert layers["1"].receptive_field == 5  # 1x1 after the sum: the residual branch's 5, not the skip's 1
    assert layers["2"].receptive_field == 5 + 9  # the global pool covers all 10 positions


@pytest.mark.parametrize("mode", ["rnn", "gru", "lstm"])
def test_fused_recurrent_flops_equal_what_the_counter_sees_in_the_scratch_layers(mode):
    shape = DataShape((1, 12, 10), 5, CLASSIFY)
    flops = {impl: describe(build(compose([f"model={mode}", f"model.impl={impl}", "model.hidden=16",
                                           "model.layers=2", "model.bidirectional=true"]).model,
                                  in_shape=shape.in_shape, num_classes=5), shape, 1)["flops_per_example"]
             for impl in ("torch", "scratch")}
    assert flops["torch"] == flops["scratch"] > 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_info_works_for_every_registered_model(name):
    in_shape = INPUT[name][0]
    model = build(compose([f"model={name}"]).model, in_shape=in_shape, num_classes=10)
    report = describe(model, DataShape(in_shape, 10, MODULAR if name in TOKENS else CLASSIFY), batch_size=4)
    assert report["params"] == sum(layer["params"] for layer in report["layers"]) > 0
    assert report["flops_per_example"] > 0 and report["activation_bytes"] > 0
    assert name != "lenet" or report["params"] == 61_706
    text = render({"model_name": name, "dataset": "x", **report})
    assert "FLOPs per example" in text and "most compute" in text


def test_info_on_a_language_model_uses_token_input():
    report = info(compose(["model=lstm", "dataset=timemachine", "model.hidden=32", "batch_size=2"]))
    assert report["input_shape"] == [2, 35] and report["layers"][-1]["shape"] == [2, 35, 28]
    assert all(layer["receptive_field"] is None for layer in report["layers"])


@pytest.mark.slow
def test_info_command_prints_a_table_or_json(in_tmp):
    out = dlbench("info", "model=lenet", "batch_size=128", cwd=in_tmp).stdout
    assert "61,706" in out and "833.04 kFLOP" in out
    report = json.loads(dlbench("info", "model=alexnet", "dataset.resize=224", "--json", cwd=in_tmp).stdout)
    assert report["params"] == 46_764_746 and report["input_shape"] == [64, 1, 224, 224]
    assert not (in_tmp / "outputs").exists()  # nothing trained, nothing written
