import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dlbench.config import build, compose
from dlbench.data import Batches, DataNotFoundError, Split, build_dataset

IDX_FILES = {"train-images-idx3-ubyte": "train_x", "train-labels-idx1-ubyte": "train_y",
             "t10k-images-idx3-ubyte": "test_x", "t10k-labels-idx1-ubyte": "test_y"}


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format of the MNIST files: magic (0, 0, type 0x08 = uint8, ndim), big-endian dims, data."""
    data = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def tiny_mnist():
    rng = np.random.default_rng(0)
    return {"train_x": rng.integers(0, 256, (50, 28, 28)), "train_y": rng.integers(0, 10, 50),
            "test_x": rng.integers(0, 256, (20, 28, 28)), "test_y": rng.integers(0, 10, 20)}


def assert_loaded(data, arrays, val_split):
    n_val = round(val_split * 50)
    assert (len(data.train), len(data.val), len(data.test)) == (50 - n_val, n_val, 20)
    # test images come back exactly (un-normalise and compare with what was written)
    test_pixels = (data.test.x * data.std[0] + data.mean[0]) * 255
    assert torch.allclose(test_pixels.squeeze(1), torch.from_numpy(arrays["test_x"]).float(), atol=1e-3)
    assert torch.equal(data.test.y, torch.from_numpy(arrays["test_y"]).long())


def test_mnist_reads_idx_files_from_the_root_with_torchvision(tmp_path, tiny_mnist):
    for name, key in IDX_FILES.items():
        write_idx(tmp_path / "MNIST" / "raw" / name, tiny_mnist[key])
    cfg = compose(["dataset=mnist", f"dataset.root={tmp_path}", "dataset.mirror=null", "dataset.download=false"])
    data = build(cfg.dataset, seed=0)
    assert_loaded(data, tiny_mnist, cfg.dataset.val_split)
    assert data.classes[0].startswith("0")  # torchvision's class names


def test_labels_outside_the_classes_are_refused_naming_the_file(tmp_path, tiny_mnist):
    """A label file that names class 12 of 10 is a corrupt file, said when the data load, not a
    run that trains on it until a plot or a confusion matrix fails."""
    from dlbench.errors import CorruptFileError

    tiny_mnist["test_y"][3] = 12
    for name, key in IDX_FILES.items():
        write_idx(tmp_path / "MNIST" / "raw" / name, tiny_mnist[key])
    cfg = compose(["dataset=mnist", f"dataset.root={tmp_path}", "dataset.mirror=null", "dataset.download=false"])
    with pytest.raises(CorruptFileError, match=r"t10k-labels-idx1-ubyte.*labels \[12\] outside the 10 classes 0..9"):
        build(cfg.dataset, seed=0)


def test_mnist_unpacks_gz_files_from_a_mirror(tmp_path, tiny_mnist):
    for name, key in IDX_FILES.items():
        write_idx(tmp_path / "mirror" / f"{name}.gz", tiny_mnist[key])
    cfg = compose(["dataset=mnist", f"dataset.root={tmp_path / 'root'}", f"dataset.mirror={tmp_path / 'mirror'}",
                   "dataset.download=false", "dataset.val_split=0.2"])
    assert_loaded(build(cfg.dataset, seed=0), tiny_mnist, 0.2)
    assert (tmp_path / "root" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_missing_data_names_every_place_tried_and_how_to_get_it(tmp_path):
    cfg = compose([f"dataset.root={tmp_path / 'empty'}", f"dataset.mirror={tmp_path / 'nomirror'}",
                   "dataset.download=false"])
    with pytest.raises(DataNotFoundError) as err:
        build(cfg.dataset)
    message = str(err.value)
    assert str(tmp_path / "empty" / "FashionMNIST" / "raw") in message
    assert f"{tmp_path / 'nomirror'} (dataset.mirror): does not exist" in message
    assert "download: skipped" in message
    assert "apt-get install dataset-fashion-mnist" in message and "dlbench data fashion_mnist" in message


def test_real_fashion_mnist_split_sizes_classes_and_normalisation():
    data = build(compose().dataset, seed=0)  # the installed data (make data / dlbench data)
    assert (len(data.train), len(data.val), len(data.test)) == (54_000, 6_000, 10_000)
    assert data.in_shape == (1, 28, 28) and data.train.x.dtype == torch.float32
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert 0.27 < data.mean[0] < 0.30  # Fashion-MNIST's known mean pixel, 0.286
    assert abs(data.train.x.mean().item()) < 1e-3 and abs(data.train.x.std().item() - 1) < 1e-3
    assert torch.bincount(data.test.y).tolist() == [1000] * 10


def test_split_and_limit_follow_the_seed():
    a, b = build_dataset("digits", seed=0), build_dataset("digits", seed=0)
    c = build_dataset("digits", seed=1)
    assert torch.equal(a.train.y, b.train.y) and torch.equal(a.val.x, b.val.x)
    assert not torch.equal(a.val.y, c.val.y)
    # the test set does not move with the seed (its normalisation follows the training split's stats)
    assert torch.equal(a.test.y, c.test.y)
    assert torch.allclose(a.test.x * a.std[0] + a.mean[0], c.test.x * c.std[0] + c.mean[0], atol=1e-5)
    assert len(build_dataset("digits", limit=100).train) == 100
    assert build_dataset("digits", val_split=0.0).val is None


def test_batches_cover_each_example_once_per_epoch_in_a_seeded_order():
    split = Split(torch.arange(10.0).view(10, 1, 1, 1), torch.arange(10))
    batches = Batches(split, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(batches) == 3
    epoch1 = torch.cat([y for _, y in batches])
    epoch2 = torch.cat([y for _, y in batches])
    assert sorted(epoch1.tolist()) == list(range(10)) and sorted(epoch2.tolist()) == list(range(10))
    assert not torch.equal(epoch1, epoch2)  # a new permutation every epoch
    again = Batches(split, 4, True, torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat([y for _, y in again]), epoch1)
    for x, y in Batches(split, 4, True, torch.Generator().manual_seed(3)):
        assert torch.equal(x.view(-1).long(), y)  # images and labels stay paired
    assert [len(y) for _, y in Batches(split, 4, shuffle=False)] == [4, 4, 2]


def test_resize_is_applied_per_batch_on_the_fly():
    data = build(compose(["dataset=digits", "dataset.resize=28"]).dataset, seed=0)
    assert data.in_shape == (1, 28, 28) and data.train.x.shape[1:] == (1, 8, 8)  # stored at the source size
    x, y = next(iter(Batches(data.train, 16, shuffle=True, generator=torch.Generator().manual_seed(0))))
    assert x.shape == (16, 1, 28, 28) and y.shape == (16,)
    x, _ = next(iter(Batches(data.test, 16, shuffle=False)))
    assert torch.allclose(x, torch.nn.functional.interpolate(data.test.x[:16], size=(28, 28), mode="bilinear",
                                                             antialias=True))


def test_a_run_trains_on_resized_batches(tmp_path):
    from dlbench.train import run
    from tests.conftest import digits_cfg

    # LeNet cannot take 8x8 digits (its second 5x5 convolution would see a 4x4 map); resized to 28 it can
    summary = run(digits_cfg("model=lenet", "dataset.resize=28", "epochs=1", "logger=none", "trainer.checkpoint=false"),
                  run_dir=tmp_path / "run")
    convs = (6 * 25 + 6) + (16 * 6 * 25 + 16)  # then 16*5*5 -> 64 (digits_cfg's hidden) -> 10
    assert summary["status"] == "completed" and summary["params"] == convs + (400 * 64 + 64) + (64 * 10 + 10)


def test_label_noise_replaces_exactly_that_fraction_of_training_labels_only():
    from dlbench.data import corrupt_labels

    labels = torch.arange(1000) % 10
    noisy = corrupt_labels(labels, 0.3, 10, seed=0)
    changed = (noisy != labels).float().mean().item()
    assert 0.3 * 0.8 < changed <= 0.3  # 300 replaced; about a tenth of them drew the true class
    assert noisy.min() >= 0 and noisy.max() <= 9
    assert torch.equal(noisy, corrupt_labels(labels, 0.3, 10, seed=0))
    assert not torch.equal(noisy, corrupt_labels(labels, 0.3, 10, seed=1))
    clean, noisy_data = build_dataset("digits", seed=0), build_dataset("digits", seed=0, label_noise=1.0)
    assert torch.equal(clean.train.x, noisy_data.train.x)  # the same images, other labels
    assert (clean.train.y == noisy_data.train.y).float().mean().item() < 0.2  # about 1/10 agree by chance
    assert torch.equal(clean.val.y, noisy_data.val.y) and torch.equal(clean.test.y, noisy_data.test.y)


def test_a_model_trained_on_random_labels_stays_at_chance_on_true_test_labels(in_tmp):
    from dlbench.train import run
    from tests.conftest import digits_cfg

    summary = run(digits_cfg("dataset.label_noise=1.0", "epochs=4"), run_dir=in_tmp / "r")
    assert summary["test/acc"] < 0.3  # 10 classes: chance is 0.1
    clean = run(digits_cfg("epochs=4"), run_dir=in_tmp / "c")
    assert clean["test/acc"] > 0.7
