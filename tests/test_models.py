import pytest
import torch

from dlbench.config import build, compose, group_options
from dlbench.models import MODELS, count_params, create_model, register_model

# each model's intended input (C, H, W) and a batch small enough for a CPU test
INPUT = {"mlp": ((1, 28, 28), 16), "cnn": ((1, 28, 28), 16), "lenet": ((1, 28, 28), 16),
         "alexnet": ((1, 224, 224), 2), "alexnet_small": ((1, 224, 224), 4), "alexnet28": ((1, 28, 28), 8),
         "vgg": ((1, 224, 224), 2), "googlenet": ((1, 96, 96), 2), "resnet18": ((1, 96, 96), 2),
         # recurrent nets as sequence classifiers here (28 rows of 28 pixels); as language models in test_lm
         "rnn": ((1, 28, 28), 16), "gru": ((1, 28, 28), 16), "lstm": ((1, 28, 28), 16),
         "sized_mlp": ((1, 28, 28), 16), "token_mlp": ((2,), 16), "transformer": ((2,), 16)}
TOKENS = {"token_mlp", "transformer"}  # inputs are token ids below num_classes (dataset=modular)


SLOW = {"googlenet", "resnet18"}  # 5-10 s each on a 2-core CPU, most of it first-call kernel set-up


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(MODELS)])
def test_every_registered_model_has_a_config_that_builds_and_learns(name):
    assert name in group_options("model"), f"model {name!r} has no conf/model/{name}.yaml"
    assert name in INPUT, f"add model {name!r}'s intended input to INPUT"
    torch.manual_seed(0)
    in_shape, batch = INPUT[name]
    model = build(compose([f"model={name}"]).model, in_shape=in_shape, num_classes=10)
    x = torch.randint(0, 10, (batch, *in_shape)) if name in TOKENS else torch.randn(batch, *in_shape)
    y = torch.randint(0, 10, (batch,))

    def loss():
        torch.manual_seed(1)  # the same dropout masks before and after the step
        return torch.nn.functional.cross_entropy(model(x), y)

    assert model(x).shape == (batch, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    assert loss() < before


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
    with pytest.raises(ValueError, match="valid models: alexnet, alexnet28, alexnet_small, cnn"):
        create_model("nosuch")
    with pytest.raises(ValueError, match="valid: relu"):
        create_model("mlp", in_shape=(1, 8, 8), num_classes=10, activation="swishy")


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="registered twice"):
        @register_model
        def mlp(in_shape, num_classes):  # noqa: F811
            return torch.nn.Identity()


def test_lenet_and_alexnet_have_the_textbook_parameter_counts():
    lenet = create_model("lenet", in_shape=(1, 28, 28), num_classes=10)
    # conv 1->6 5x5, conv 6->16 5x5, then 16*5*5 -> 120 -> 84 -> 10
    assert count_params(lenet) == (6 * 25 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) \
        + (84 * 10 + 10) == 61_706
    alexnet = build(compose(["model=alexnet"]).model, in_shape=(1, 224, 224), num_classes=10)
    assert count_params(alexnet) == 46_764_746


@pytest.mark.parametrize("name", ["alexnet28", "resnet18", "lenet"])
def test_small_input_models_take_28x28_and_3_channels(name):
    model = build(compose([f"model={name}"]).model, in_shape=(3, 28, 28), num_classes=7).eval()
    assert model(torch.zeros(2, 3, 28, 28)).shape == (2, 7)


def test_resnet18_drops_the_stem_downsampling_for_small_images():
    small = create_model("resnet18", in_shape=(1, 28, 28), num_classes=10)
    big = create_model("resnet18", in_shape=(1, 96, 96), num_classes=10)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in small) and small[0].stride == (1, 1)
    assert isinstance(big[3], torch.nn.MaxPool2d) and big[0].stride == (2, 2)


def test_a_too_small_input_says_what_to_do():
    with pytest.raises(ValueError, match="dataset.resize"):
        create_model("alexnet", in_shape=(1, 28, 28), num_classes=10)
