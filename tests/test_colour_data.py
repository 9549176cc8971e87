"""CIFAR-10, CIFAR-100 and SVHN through torchvision's own parsers, on small files written here in each
real format (CIFAR's pickled batches and its .tar.gz, SVHN's .mat): nothing is downloaded."""
import os
import pickle
import tarfile

import numpy as np
import pytest
import scipy.io

from dlbench.config import build, compose
from dlbench.errors import CorruptFileError, DataNotFoundError
from tests.conftest import dlbench

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def images(n: int, seed: int) -> np.ndarray:
    """n colour images as CIFAR stores them: (n, 3072) uint8, the red plane, then green, then blue;
    each channel has its own brightness so per-channel statistics differ."""
    rng = np.random.default_rng(seed)
    planes = [rng.integers(lo, lo + 100, size=(n, 1024), dtype=np.uint8) for lo in (20, 90, 150)]
    return np.concatenate(planes, axis=1)


def write_cifar10(root, per_batch=20, test=30, labels=None):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        batch = {"data": images(per_batch, i), "labels": [(i + j) % 10 for j in range(per_batch)]}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    test_labels = labels if labels is not None else [j % 10 for j in range(test)]
    (folder / "test_batch").write_bytes(pickle.dumps({"data": images(test, 9), "labels": test_labels}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR10_NAMES}))
    return folder


def write_cifar100(root, train=60, test=20):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    (folder / "train").write_bytes(pickle.dumps({"data": images(train, 1), "fine_labels": [j % 100 for j in range(train)]}))
    (folder / "test").write_bytes(pickle.dumps({"data": images(test, 2), "fine_labels": [j % 100 for j in range(test)]}))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))


def write_svhn(folder, train=40, test=20):
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train_32x32.mat", train), ("test_32x32.mat", test)):
        x = np.stack([images(n, len(name)).reshape(n, 3, 32, 32)[i].transpose(1, 2, 0) for i in range(n)], axis=-1)
        y = np.array([[10 if j % 10 == 0 else j % 10] for j in range(n)], dtype=np.uint8)  # SVHN's 10 is a 0
        scipy.io.savemat(folder / name, {"X": x, "y": y})


def data(name, *overrides):
    offline = ["dataset.download=false"] if name != "image_folder" else []
    return build(compose([f"dataset={name}", *offline, *overrides]).dataset)


def test_cifar10_is_read_by_torchvisions_parser_with_its_class_names_and_per_channel_statistics(tmp_path):
    write_cifar10(tmp_path)
    d = data("cifar10", f"dataset.root={tmp_path}", "dataset.val_split=0.2")
    assert (len(d.train), len(d.val), len(d.test)) == (80, 20, 30)
    assert tuple(d.train.x.shape[1:]) == (3, 32, 32) and d.classes == CIFAR10_NAMES
    # standardize: mean 0 and std 1 per channel over the training split, each channel its own statistics
    assert d.train.x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (d.train.x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3
    assert d.mean[0] < d.mean[1] < d.mean[2]
    # the pixels are where CIFAR put them: the first test image's red plane, back from the normalisation
    first = np.frombuffer(images(30, 9)[0].tobytes(), dtype=np.uint8).reshape(3, 32, 32)
    restored = d.test.x[0].numpy() * np.array(d.std)[:, None, None] + np.array(d.mean)[:, None, None]
    assert np.abs(restored * 255 - first).max() < 1e-2


def test_cifar100_has_its_hundred_fine_classes(tmp_path):
    write_cifar100(tmp_path)
    d = data("cifar100", f"dataset.root={tmp_path}", "dataset.val_split=0")
    assert d.num_classes == 100 and len(d.train) == 60 and d.classes[:2] == ["c0", "c1"]


def test_svhn_reads_its_mat_files_and_its_ten_is_a_zero(tmp_path):
    write_svhn(tmp_path / "SVHN")
    d = data("svhn", f"dataset.root={tmp_path}", "dataset.val_split=0")
    assert (len(d.train), len(d.test), d.num_classes) == (40, 20, 10)
    assert d.test.y[:3].tolist() == [0, 1, 2] and tuple(d.train.x.shape[1:]) == (3, 32, 32)  # the test split in order


def test_a_mirror_holding_the_original_archive_is_unpacked_into_the_root(tmp_path):
    staging, mirror, root = tmp_path / "staging", tmp_path / "mirror", tmp_path / "root"
    write_cifar10(staging)
    mirror.mkdir()
    with tarfile.open(mirror / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    d = data("cifar10", f"dataset.root={root}", f"dataset.mirror={mirror}")
    assert len(d.test) == 30 and (root / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert not any(p.name.endswith(".unpacking") for p in root.iterdir())


def test_missing_data_says_every_place_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        data("cifar10", f"dataset.root={tmp_path}", f"dataset.mirror={tmp_path / 'nosuch'}")
    text = str(err.value)
    assert f"{tmp_path}/cifar-10-batches-py (dataset.root): missing data_batch_1" in text
    assert f"{tmp_path / 'nosuch'} (dataset.mirror): does not exist" in text
    assert "download: skipped (dataset.download=false)" in text and "cifar-10-python.tar.gz" in text


def test_labels_outside_the_classes_and_foreign_files_are_named(tmp_path):
    write_cifar10(tmp_path / "a", labels=[12] * 30)
    with pytest.raises(CorruptFileError, match=r"cifar-10-batches-py.*test labels \[12\] outside the 10 classes"):
        data("cifar10", f"dataset.root={tmp_path / 'a'}")
    folder = write_cifar10(tmp_path / "b")
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(CorruptFileError, match=r"cannot parse as CIFAR10"):
        data("cifar10", f"dataset.root={tmp_path / 'b'}")


@pytest.mark.slow
def test_a_cnn_trains_on_cifar10_and_dlbench_data_reports_its_splits(tmp_path):
    write_cifar10(tmp_path / "data")
    env_root = {"DLBENCH_DATA": str(tmp_path / "data")}
    os.environ.update(env_root)
    try:
        said = dlbench("data", "cifar10", cwd=tmp_path).stdout
        assert "cifar10: 90 train, 10 val, 30 test examples of shape (3, 32, 32), 10 classes" in said
        dlbench("train", "dataset=cifar10", "model=cnn", "epochs=1", "logger=none", "trainer.progress=false",
                 "--into", "run", cwd=tmp_path)
    finally:
        for key in env_root:
            os.environ.pop(key)
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 1


# ---------------------------------------------------------------- a folder of one's own images

def write_pngs(folder, classes=("cat", "dog"), per_class=6, size=(20, 14), bad=None):
    from PIL import Image

    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.full((size[1], size[0], 3), (40 * c + 10 * i) % 256, dtype=np.uint8)
            pixels[..., c % 3] = 200  # each class its own colour
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    if bad:
        (folder / classes[0] / bad).write_bytes(b"not a png at all")


def test_an_image_folder_is_decoded_once_resized_and_a_bad_image_is_named_not_fatal(tmp_path, capsys, monkeypatch):
    write_pngs(tmp_path / "pets", bad="broken.png")
    d = data("image_folder", f"dataset.path={tmp_path / 'pets'}", "dataset.resize=16", "dataset.val_split=0")
    assert d.classes == ["cat", "dog"] and len(d.train) + len(d.test) == 12  # the broken file left out
    assert tuple(d.train.x.shape[1:]) == (3, 16, 16) and len(d.test) == round(0.2 * 12)
    assert "broken.png: not an image PIL can decode" in capsys.readouterr().err
    assert len(list((tmp_path / "pets" / ".dlbench").glob("*.pt"))) == 1
    import dlbench.data.folder as folder  # the second run reads the cache: nothing is decoded again

    monkeypatch.setattr(folder, "_decode", lambda *a: pytest.fail("decoded again"))
    again = data("image_folder", f"dataset.path={tmp_path / 'pets'}", "dataset.resize=16", "dataset.val_split=0")
    assert (again.train.x == d.train.x).all()


def test_an_image_folder_with_train_val_and_test_folders_keeps_them(tmp_path):
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        write_pngs(tmp_path / "set" / split, per_class=n, size=(8, 8))
    d = data("image_folder", f"dataset.path={tmp_path / 'set'}", "dataset.grayscale=true")
    assert (len(d.train), len(d.val), len(d.test)) == (10, 4, 6)  # val/ is the validation split
    assert tuple(d.train.x.shape[1:]) == (1, 8, 8)


def test_images_of_different_sizes_without_resize_and_a_missing_folder_are_one_line(tmp_path):
    write_pngs(tmp_path / "a", classes=("x",), size=(8, 8))
    write_pngs(tmp_path / "a", classes=("y",), size=(9, 9))
    from dlbench.data.folder import ImageFolderError

    with pytest.raises(ImageFolderError, match=r"images of different sizes .*set dataset.resize=SIDE"):
        data("image_folder", f"dataset.path={tmp_path / 'a'}")
    with pytest.raises(DataNotFoundError, match=r"dataset.path=.*nosuch: no such folder"):
        data("image_folder", f"dataset.path={tmp_path / 'nosuch'}")


@pytest.mark.slow
def test_a_model_trains_on_an_image_folder_through_the_cli(tmp_path):
    write_pngs(tmp_path / "pets", per_class=10)
    dlbench("train", "dataset=image_folder", f"dataset.path={tmp_path / 'pets'}", "dataset.resize=12", "model=cnn",
            "epochs=2", "logger=none", "trainer.progress=false", "--into", "run", cwd=tmp_path)
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test/acc"] is not None
