"""Each probe's number against an independent computation on a tiny model."""
import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dlbench.analysis import blend, interpolate, pca_2d, trajectory
from dlbench.artifacts import read_metrics
from dlbench.run.recorder import Recorder
from dlbench.callbacks.probes import GradNorm, dead_relu_fractions, layer_outputs
from dlbench.probing import hessian_eigenvalues, input_gradient_norm, positive_eigenvalue_fraction, \
    top_hessian_eigenvalue
from dlbench.train import run
from tests.conftest import digits_cfg, dlbench


def test_grad_norm_matches_a_hand_computation(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    state = SimpleNamespace(model=model, run_dir=tmp_path, global_step=0, recorder=Recorder(tmp_path, 1))
    probe = GradNorm(first_steps=5, every=10)
    probe.on_run_start(state)
    before = [p.detach().clone() for p in model.parameters()]
    grads = [torch.full_like(p, float(i + 1)) for i, p in enumerate(model.parameters())]  # 1s, 2s, 3s, 4s
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads):
            p.grad = g
            p -= 0.1 * g  # the "optimizer step" the probe watches
    state.global_step = 1
    probe.on_step(state, {})
    metrics = {"epoch": 1}
    probe.on_epoch_end(state, metrics)  # flushes the records file
    rec = json.loads((tmp_path / "probes" / "grad_norm.jsonl").read_text())
    assert metrics["grad/norm"] == rec["grad/norm"] and metrics["update/ratio"] == rec["update/ratio"]
    sizes = [4, 2, 2, 1]
    assert rec["grad/norm"] == pytest.approx(sum(n * (i + 1) ** 2 for i, n in enumerate(sizes)) ** 0.5)
    assert rec["grad/mean_abs"] == pytest.approx(sum(n * (i + 1) for i, n in enumerate(sizes)) / 9)
    weight_norm = torch.cat([b.flatten() for b in before]).norm().item()
    assert rec["update/ratio"] == pytest.approx(0.1 * rec["grad/norm"] / weight_norm, rel=1e-5)
    assert rec["grad/norm_by_layer"]["0.weight"] == pytest.approx(2.0)  # four 1s
    assert [probe.wanted(s) for s in (5, 6, 10, 11, 20)] == [True, False, True, False, True]
    after_one = torch.cat([p.detach().flatten() for p in model.parameters()]).norm().item()
    with torch.no_grad():  # a second step: its ratio is against the weights the first step left
        for p, g in zip(model.parameters(), grads):
            p -= 0.3 * g
    state.global_step = 2
    probe.on_step(state, {})
    probe.on_epoch_end(state, {"epoch": 1})
    second = json.loads((tmp_path / "probes" / "grad_norm.jsonl").read_text().splitlines()[1])
    assert second["update/ratio"] == pytest.approx(0.3 * rec["grad/norm"] / after_one, rel=1e-5)


def test_dead_relu_fraction_counts_units_silent_on_every_example():
    layer = nn.Linear(2, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [0, 0], [0, 0]]))
        layer.bias.copy_(torch.tensor([0.0, 0.0, -1.0, 1.0]))  # unit 2 always off, unit 3 always on
    model = nn.Sequential(layer, nn.ReLU())
    x = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])  # units 0 and 1 each fire once
    assert dead_relu_fractions(model, x) == {"relu/dead/1": 0.25}


def test_power_iteration_finds_the_top_eigenvalue_of_a_quadratic():
    theta = nn.Parameter(torch.randn(5))
    eigenvalues = torch.tensor([7.0, 3.0, 1.0, 0.5, -2.0])
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(0)))
    hessian = q @ torch.diag(eigenvalues) @ q.T  # a rotated quadratic with known spectrum
    top = top_hessian_eigenvalue(lambda: 0.5 * theta @ hessian @ theta, [theta], iterations=100)
    assert top == pytest.approx(7.0, rel=1e-4)


def test_exact_hessian_spectrum_of_least_squares():
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    x, y = torch.randn(20, 3), torch.randn(20, 1)
    mse = nn.MSELoss()
    expected = torch.linalg.eigvalsh(2 / 20 * x.T @ x)  # the Hessian of mean squared error
    assert torch.allclose(hessian_eigenvalues(model, mse, x, y), expected, atol=1e-5)
    assert positive_eigenvalue_fraction(model, mse, x, y) == 1.0
    top = top_hessian_eigenvalue(lambda: mse(model(x), y), list(model.parameters()), iterations=100)
    assert top == pytest.approx(expected.max().item(), rel=1e-4)


def test_input_gradient_norm_is_the_mean_per_example_norm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    per_example = []
    for i in range(6):
        xi = x[i:i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(xi), y[i:i + 1]), xi)
        per_example.append(g.norm())
    assert input_gradient_norm(model, nn.CrossEntropyLoss(), x, y) == pytest.approx(torch.stack(per_example).mean().item(), rel=1e-5)


def test_probes_report_into_the_epoch_metrics(in_tmp):
    summary = run(digits_cfg("epochs=2", "model.hidden=[8]", "probe=[grad_norm,weight_norm,sharpness]",
                             "probe.sharpness.examples=50"), run_dir=in_tmp / "r")
    last = read_metrics(in_tmp / "r")[-1]
    for key in ("grad/norm", "grad/mean_abs", "update/ratio", "weights/norm/1", "relu/dead/2",
                "sharpness/input_grad", "sharpness/hessian_top", "sharpness/positive_fraction"):
        assert key in last and key in summary, key
    assert 0.0 <= last["sharpness/positive_fraction"] <= 1.0 and last["sharpness/hessian_top"] > 0
    assert (in_tmp / "r" / "plots" / "grad_norm.png").is_file()


def test_interpolation_ends_reproduce_the_two_runs(in_tmp):
    a = run(digits_cfg("epochs=2", "lr=0.1"), run_dir=in_tmp / "a")
    b = run(digits_cfg("epochs=2", "lr=0.05", "batch_size=256"), run_dir=in_tmp / "b")  # same seed: same data
    rows = interpolate(in_tmp / "a", in_tmp / "b", [0.0, 0.5, 1.0], out=in_tmp / "i", device="cpu")
    assert rows[0]["test/loss"] == pytest.approx(a["test/loss"], rel=1e-5) and rows[0]["test/acc"] == a["test/acc"]
    assert rows[2]["test/loss"] == pytest.approx(b["test/loss"], rel=1e-5) and rows[2]["test/acc"] == b["test/acc"]
    assert rows[1]["test/loss"] != pytest.approx(a["test/loss"], rel=1e-3)
    assert (in_tmp / "i" / "interpolation.png").is_file() and (in_tmp / "i" / "interpolation.csv").is_file()
    assert blend({"w": torch.tensor([0.0]), "n": torch.tensor(3)}, {"w": torch.tensor([2.0]), "n": torch.tensor(5)},
                 1.5) == {"w": torch.tensor([3.0]), "n": torch.tensor(3)}


def test_pca_of_a_known_planar_trajectory_keeps_its_geometry(tmp_path):
    gen = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(50, 2, generator=gen, dtype=torch.float64))  # an orthonormal plane
    walk = torch.tensor([[0.0, 0.0], [1.0, 0.5], [2.0, 0.0], [3.0, -1.0], [4.0, 0.2]], dtype=torch.float64)
    points = 7.0 + walk @ basis.T  # (5, 50): a path in a 2-D plane of a 50-D space
    coords, explained = pca_2d(points)
    assert explained[:2].sum().item() == pytest.approx(1.0)
    assert torch.allclose(torch.cdist(coords, coords), torch.cdist(walk, walk), atol=1e-9)  # distances kept
    # the same through saved snapshots of two runs
    for name, part in (("r1", points[:3]), ("r2", points[3:])):
        (tmp_path / name / "trajectory").mkdir(parents=True)
        for i, p in enumerate(part):
            torch.save(p.float(), tmp_path / name / "trajectory" / f"epoch_{i:04d}.pt")
    rows = trajectory([tmp_path / "r1", tmp_path / "r2"], out=tmp_path / "t")
    xy = torch.tensor([[r["pc1"], r["pc2"]] for r in rows], dtype=torch.float64)
    assert torch.allclose(torch.cdist(xy, xy), torch.cdist(walk, walk), atol=1e-4)
    assert (tmp_path / "t" / "trajectory.png").is_file()


def test_layer_outputs_are_each_activation_and_the_logits():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    outs = layer_outputs(model, x)
    assert set(outs) == {"act1", "logits"}
    assert torch.equal(outs["act1"], torch.relu(model[0](x))) and torch.equal(outs["logits"], model(x))


@pytest.mark.slow
def test_trajectory_and_interpolate_commands(in_tmp):
    for seed in (0, 1):
        dlbench("train", "dataset=digits", "epochs=2", "model.hidden=[16]", "probe=trajectory", f"seed={seed}",
                f"hydra.run.dir=runs/s{seed}", cwd=in_tmp)
    out = dlbench("trajectory", "runs/s0", "runs/s1", "--out", "traj", cwd=in_tmp).stdout
    assert "6 snapshots of 2 run(s)" in out
    rows = json.loads((in_tmp / "traj" / "trajectory.json").read_text())
    assert [r["epoch"] for r in rows] == [0, 1, 2, 0, 1, 2] and rows[1]["val/loss"] is not None
    out = dlbench("interpolate", "runs/s0", "runs/s1", "--alphas", "-1:1:5", "--out", "interp", cwd=in_tmp).stdout
    assert [line.split()[1] for line in out.strip().splitlines()] == ["-1.0000", "-0.5000", "0.0000", "0.5000", "1.0000"]
    assert (in_tmp / "interp" / "interpolation.png").is_file()
    embedded = dlbench("train", "dataset=digits", "epochs=2", "model.hidden=[16]", "probe=embeddings",
                       "probe.embeddings.method=tsne", "probe.embeddings.examples=200", "hydra.run.dir=runs/e",
                       cwd=in_tmp)
    assert embedded.returncode == 0
    assert len(list((in_tmp / "runs" / "e" / "plots" / "embeddings").glob("*.png"))) == 6  # 3 epochs x 2 layers
