import pytest
import torch

from dlbench.config import build, compose, group_options
from dlbench.models import MODELS, count_params, create_model, register_model

INPUT = {"mlp": (1, 28, 28), "cnn": (1, 28, 28)}  # each model's intended input


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_has_a_config_that_builds_and_learns(name):
    assert name in group_options("model"), f"model {name!r} has no conf/model/{name}.yaml"
    torch.manual_seed(0)
    in_shape = INPUT[name]
    model = build(compose([f"model={name}"]).model, in_shape=in_shape, num_classes=10)
    x, y = torch.randn(16, *in_shape), torch.randint(0, 10, (16,))
    assert model(x).shape == (16, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = torch.nn.functional.cross_entropy(model(x), y)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert torch.nn.functional.cross_entropy(model(x), y) < before


def test_mlp_parameter_count_matches_a_hand_count():
    model = create_model("mlp", in_shape=(1, 28, 28), num_classes=10, hidden=[512, 512])
    assert count_params(model) == (784 * 512 + 512) + (512 * 512 + 512) + (512 * 10 + 10) == 669_706


def test_cnn_parameter_count_matches_a_hand_count():
    model = create_model("cnn", in_shape=(1, 28, 28), num_classes=10, channels=[32, 64], hidden=[128])
    convs = (1 * 32 * 9 + 32) + (32 * 64 * 9 + 64)
    dense = (64 * 7 * 7 * 128 + 128) + (128 * 10 + 10)  # 28 -> 14 -> 7 after two poolings
    assert count_params(model) == convs + dense


def test_mlp_options_shape_the_network():
    model = create_model("mlp", in_shape=(3, 8, 8), num_classes=5, hidden=[32, 16], activation="tanh",
                         batchnorm=True, dropout=0.5)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten", "Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear", "BatchNorm1d", "Tanh",
                     "Dropout", "Linear"]
    assert model(torch.zeros(4, 3, 8, 8)).shape == (4, 5)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid models: cnn, mlp"):
        create_model("nosuch")
    with pytest.raises(ValueError, match="valid: relu"):
        create_model("mlp", in_shape=(1, 8, 8), num_classes=10, activation="swishy")


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="registered twice"):
        @register_model
        def mlp(in_shape, num_classes):  # noqa: F811
            return torch.nn.Identity()
