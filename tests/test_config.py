import pytest
import torch

from dlbench.config import CONF_DIR, GROUPS, build, compose, group_options, path_safe, registered_models, run_name
from dlbench.losses import build_loss
from dlbench.optim import build_optimizer, build_schedule
from dlbench.regularizers import build_regularizers
from tests.test_models import INPUT, TOKENS

# the datasets made without files (bundled or generated), and their model outputs
IN_MEMORY = {"digits": 10, "function": 1, "modular": 97, "playground": 2, "boolean": 2}


# experiments and their variants (a study's arms) are composed with their study in test_study
@pytest.mark.parametrize("group", [g for g in GROUPS if g not in ("experiment", "variant")])
def test_every_group_option_composes_and_instantiates(group):
    options = group_options(group)
    assert options, f"conf/{group}/ has no options"
    for option in options:
        overrides = [f"{group}={option}"] + (["dataset=digits"] if group != "dataset" else [])
        cfg = compose(overrides)
        node = cfg[group]
        if group == "dataset" and option not in IN_MEMORY:  # those read files: tested in test_data/test_lm
            assert node._target_.startswith("dlbench.data.") and node.name == option
        elif group == "dataset":
            data = build(node, seed=0)
            assert data.num_classes == IN_MEMORY[option] and len(data.train) > 0
        elif group == "model":
            in_shape = INPUT[option][0]  # the model's intended input
            model = build(node, in_shape=in_shape, num_classes=10).eval()
            with torch.no_grad():
                x = torch.zeros(1, *in_shape, dtype=torch.long if option in TOKENS else torch.float)
                assert model(x).shape == (1, 10)
        elif group == "optimizer":
            assert isinstance(build_optimizer(node, [torch.nn.Parameter(torch.zeros(2))]), torch.optim.Optimizer)
        elif group == "scheduler":
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
            schedule = build_schedule(node, opt, epochs=3, steps_per_epoch=10)
            assert (schedule.main is None) == (option == "none")
        elif group == "loss":
            two_classes = option == "bce"  # binary cross-entropy judges two classes only
            data = build(compose(["dataset=playground" if two_classes else "dataset=digits"]).dataset, seed=0)
            loss = build_loss(node, data)
            assert isinstance(loss, torch.nn.Module)
            assert loss(torch.randn(4, data.num_classes), torch.tensor([0, 1, 0, 1])).dim() == 0
        elif group == "regularizer":
            data = build(cfg.dataset, seed=0)
            model = build(cfg.model, in_shape=(1, 8, 8), num_classes=10)
            assert all("_target_" in reg for reg in node.values() if reg)  # built like an optimizer
            build_regularizers(cfg, model, build_loss(cfg.loss, data), data)
        else:
            assert node is not None


def test_top_level_knobs_reach_the_groups():
    cfg = compose(["model=cnn", "lr=0.01"])
    opt = build_optimizer(cfg.optimizer, [torch.nn.Parameter(torch.zeros(2))])
    assert opt.param_groups[0]["lr"] == 0.01
    assert cfg.model.name == "cnn"
    adam = build_optimizer(compose(["optimizer=adam", "lr=1e-3"]).optimizer, [torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["lr"] == 1e-3


def test_defaults_are_the_documented_ones():
    cfg = compose()
    assert (cfg.dataset.name, cfg.model.name, list(cfg.model.hidden)) == ("fashion_mnist", "mlp", [512, 512])
    assert (cfg.optimizer._target_, cfg.lr, cfg.batch_size, cfg.epochs) == ("torch.optim.SGD", 0.1, 64, 10)
    assert (cfg.device, cfg.target_acc, cfg.dataset.val_split) == ("auto", 0.85, 0.1)


@pytest.mark.parametrize("group", GROUPS)
def test_base_configs_are_not_choices(group):
    assert not [option for option in group_options(group) if option.startswith("_")]
    folder = CONF_DIR / group
    assert set(group_options(group)) <= {p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml")}


def test_every_model_config_inherits_init_and_init_std():
    assert (CONF_DIR / "model" / "_base.yaml").is_file()
    own_init = {"googlenet": "xavier_uniform"}  # as the textbook trains it: under torch's default it never learns
    for option in group_options("model"):
        model = compose([f"model={option}"]).model
        assert (model._target_, model.name, model.init, model.init_std) == (
            "dlbench.models.create_model", option, own_init.get(option, "default"), 0.01), option


def test_image_datasets_inherit_their_shared_keys():
    for option in ("fashion_mnist", "mnist", "digits"):
        dataset = compose([f"dataset={option}"]).dataset
        assert (dataset._target_, dataset.name, dataset.val_split, dataset.label_noise) == (
            "dlbench.data.build_dataset", option, 0.1, 0.0), option
        assert {"limit", "imbalance", "sampler", "resize"} <= set(dataset), option
    assert compose(["dataset=mnist"]).dataset.mirror == "/usr/share/datasets/mnist"  # its own, not Fashion-MNIST's


def test_registered_models_read_from_the_source_are_the_registry():
    from dlbench.models import MODELS

    assert registered_models() == set(MODELS)


def test_unknown_model_composition_lists_the_valid_names():
    with pytest.raises(Exception) as err:
        compose(["model=nosuch"])
    message = str(err.value)
    assert "nosuch" in message and all(name in message for name in group_options("model"))


def test_path_safe_makes_one_folder_name():
    assert path_safe("dataset.root=/tmp/x,lr=0.1") == "dataset.root=_tmp_x,lr=0.1"
    assert path_safe("") == "defaults"
    assert "/" not in path_safe("a/" * 200) and len(path_safe("a/" * 200)) <= 120
    # runs that differ only past the cut keep folders of their own
    long = "dataset.features=[x1,x2,x1sq,x2sq,x1x2,sin_x1,sin_x2],dataset.kind=spiral,epochs=200,lr=0.01,model.activation=tanh"
    assert path_safe(long + ",model.hidden=[8,8]") != path_safe(long + ",model.hidden=[16,16]")
    assert len(path_safe(long + ",model.hidden=[8,8]")) == 120


def test_a_sweep_names_its_run_folders_with_run_name():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    overrides = ["model=cnn", "lr=0.01", "dataset.root=/tmp/x"]
    assert run_name(overrides) == "dataset.root=_tmp_x,lr=0.01,model=cnn"  # sorted, whatever the typed order
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.sweep.subdir == run_name(overrides)
    assert cfg.hydra.run.dir.endswith("_" + run_name(overrides))


def test_conf_dir_is_the_repository_conf():
    assert (CONF_DIR / "train.yaml").is_file()
