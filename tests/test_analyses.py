"""A study's analyses on run folders written here with known numbers: with `seeds=N` a cell's runs
are repeats, and each analysis gives the cell's mean (with its 95% interval) rather than N rows."""
import json

import yaml

from dlbench.report import fmt
from dlbench.runs import load_runs
from dlbench.stats import half_width
from dlbench.study.analyses import interpolate, overlay, per_class, scatter, steps


def fake_run(root, overrides, summary, files=None):
    folder = root / ",".join(overrides)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (folder / "summary.json").write_text(json.dumps({"status": "completed", **summary}))
    for name, text in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def grad_norms(*values):
    return {"probes/grad_norm.jsonl": "".join(json.dumps({"step": i + 1, "grad/norm": v}) + "\n"
                                                for i, v in enumerate(values))}


def rows_of(lines: list[str]) -> dict[str, list[str]]:
    """The first markdown table in an analysis's lines, by its first column."""
    text = "\n".join(lines).split("\n\n")
    table = next(block for block in text if block.startswith("|")).splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    return {r[0]: r[1:] for r in rows[2:]}


def test_steps_gives_each_cell_the_mean_of_its_seeds_with_their_interval(tmp_path):
    per_run = {("0.1", "0"): (1.0, 3.0), ("0.1", "1"): (2.0, 4.0), ("0.1", "2"): (4.0, 6.0), ("1", "0"): (9.0, 11.0)}
    for (lr, seed), values in per_run.items():
        fake_run(tmp_path, [f"lr={lr}", f"seed={seed}"], {}, grad_norms(*values))
    lines = steps(load_runs([tmp_path]), tmp_path / "analysis", first=2)
    table = rows_of(lines)
    assert set(table) == {"lr=0.1", "lr=1"}  # one row a cell, not one a seed
    means = [2.0, 3.0, 5.0]  # each run's mean over steps 1-2
    assert table["lr=0.1"][0] == f"{fmt(sum(means) / 3, half_width(means))} (3)"
    assert table["lr=1"][0] == "10.00"  # one run: no interval
    assert (tmp_path / "analysis" / "grad_norm_first_2_steps.png").is_file()


def test_per_class_averages_each_class_over_a_cells_seeds(tmp_path):
    accs = {"0": [0.5, 0.9], "1": [0.7, 0.9], "2": [0.6, 0.6]}
    for seed, (a, b) in accs.items():
        fake_run(tmp_path, ["variant=plain", f"seed={seed}"],
                 {"test/per_class_acc": {"a": a, "b": b}, "train/class_counts": [100, 5]})
    fake_run(tmp_path, ["variant=weighted", "seed=0"],
             {"test/per_class_acc": {"a": 0.8, "b": 0.8}, "train/class_counts": [100, 5]})
    lines = per_class(load_runs([tmp_path]), tmp_path / "analysis")
    table = rows_of(lines)
    assert table["variant=plain"][:2] == ["0.6000", "0.8000"]
    run_means = [0.7, 0.8, 0.6]
    assert table["variant=plain"][2] == f"0.7000 ± {half_width(run_means):.4f} (3)"
    assert table["variant=weighted"] == ["0.8000", "0.8000", "0.8000"]
    assert "variant=plain seed=0" not in "\n".join(lines)


def test_scatter_has_a_row_per_cell_and_a_sweep_over_seeds_alone_a_row_per_run(tmp_path):
    for width, params in (("4", 3190), ("64", 50890)):
        for seed, loss in enumerate((0.4, 0.5, 0.6) if width == "4" else (0.2, 0.2, 0.2)):
            fake_run(tmp_path / "widths", [f"model.hidden=[{width}]", f"seed={seed}"],
                     {"params": params, "test/loss": loss})
    table = rows_of(scatter(load_runs([tmp_path / "widths"]), tmp_path / "a", x="params", y=["test/loss"]))
    assert list(table) == ["model.hidden=[4]", "model.hidden=[64]"]  # ordered by x
    assert table["model.hidden=[4]"] == ["3,190", f"0.5000 ± {half_width([0.4, 0.5, 0.6]):.4f} (3)"]
    assert table["model.hidden=[64]"][1] == "0.2000 ± 0.0000 (3)"

    for seed, loss in enumerate((0.3, 0.1, 0.2)):
        fake_run(tmp_path / "seeds", [f"seed={seed}"], {"train/loss": loss, "frac": 0.5 + seed / 10})
    table = rows_of(scatter(load_runs([tmp_path / "seeds"]), tmp_path / "b", x="train/loss", y=["frac"]))
    assert list(table) == ["seed=1", "seed=2", "seed=0"]  # each run its own point, by its x


def test_overlay_draws_a_cells_seeds_in_one_colour_and_names_it_once(tmp_path, monkeypatch):
    curve = "x,target,model\n0,1,0.9\n1,0,0.1\n"
    for depth in ("1", "2"):
        for seed in ("0", "1"):
            fake_run(tmp_path, [f"model.depth={depth}", f"seed={seed}"], {}, {"plots/function.csv": curve})
    drawn = []
    from matplotlib.axes import Axes
    original = Axes.plot

    def record(self, *args, **kwargs):
        drawn.append((kwargs.get("color"), kwargs.get("label")))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", record)
    overlay(load_runs([tmp_path]), tmp_path / "analysis")
    fits = [d for d in drawn if d[1] != "target"]
    assert len(fits) == 4
    assert [c for c, _ in fits] == ["C0", "C0", "C1", "C1"]
    assert [label for _, label in fits] == ["model.depth=1 (2 runs)", None, "model.depth=2 (2 runs)", None]


def test_interpolate_takes_the_lowest_seed_of_each_end_and_says_which(tmp_path, monkeypatch):
    import dlbench.analysis

    for batch in ("64", "1024"):
        for seed in ("2", "0", "1"):
            fake_run(tmp_path, [f"batch_size={batch}", f"seed={seed}"], {})
    ends = []

    def along_line(a, b, points, out):
        ends.append((a.name, b.name))
        return [{"alpha": p, "train/loss": 1.0} for p in points]

    monkeypatch.setattr(dlbench.analysis, "interpolate", along_line)
    lines = interpolate(load_runs([tmp_path]), tmp_path / "analysis", a={"batch_size": 64}, b={"batch_size": 1024},
                        alphas="0:1:3")
    assert ends == [("batch_size=64,seed=0", "batch_size=1024,seed=0")]
    assert lines[0] == "## Along the line from batch_size=64 seed=0 (alpha 0) to batch_size=1024 seed=0 (alpha 1)"

