"""`dlbench report` on run folders written here with known numbers: every cell can be checked."""
import csv
import io
import json
import statistics

import pytest
import yaml
from scipy import stats as scipy_stats

from dlbench.report import WITHIN_NOISE, Best, build_table, cell_text, lr_notes, markdown, table_grid, value_order
from dlbench.report_cli import main
from dlbench.runs import ReportError, load_runs

ACC = {("0.1", "mlp"): [0.80, 0.84, 0.83], ("0.1", "cnn"): [0.90, 0.88, 0.91],
       ("0.01", "mlp"): [0.70, 0.72, 0.75], ("0.01", "cnn"): [0.86, 0.85, 0.80]}


def fake_run(root, overrides, status="completed", accs=(0.5, 0.6), summary=True, **extra):
    """A run folder as dlbench writes it: .hydra/overrides.yaml, metrics.jsonl, summary.json."""
    folder = root / ",".join(overrides)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    history = [{"epoch": i + 1, "train/loss": 2.0 / (i + 1), "train/acc": a, "val/loss": 1.0 / (i + 1),
                "val/acc": a, "test/loss": 1.0, "test/acc": a, "epoch_seconds": 1.5} for i, a in enumerate(accs)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in history))
    if summary:
        reached = next((m["epoch"] for m in history if m["val/acc"] >= 0.85), None)
        data = {"status": status, "test/acc": accs[-1] if accs else None, "best/val/acc": max(accs, default=None),
                "target_metric": "val/acc", "epochs_to_target": reached, "params": 1000, "wall_seconds": 3.0,
                "overrides": list(overrides), **extra}
        (folder / "summary.json").write_text(json.dumps(data))
    return folder


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    for (lr, model), accs in ACC.items():
        for seed, acc in enumerate(accs):
            fake_run(root, [f"lr={lr}", f"model={model}", f"seed={seed}"], accs=(acc - 0.1, acc))
    return root


def t_half(values):
    """The 95% interval's half-width as scipy.stats computes it (an oracle independent of dlbench.stats)."""
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values),
                                       scale=scipy_stats.sem(values))
    return (high - low) / 2


def test_rows_and_columns_are_the_varying_overrides_and_cells_mean_interval_count(sweep):
    runs = load_runs([sweep])
    table = build_table(runs, ["test/acc"])
    assert (table.row_keys, table.col_keys) == (["lr"], ["model"])  # seeds are repeats, not a dimension
    assert table.rows == [("0.01",), ("0.1",)] and table.cols == [("cnn",), ("mlp",)]
    for (lr, model), accs in ACC.items():
        cell = table.cell((lr,), (model,))
        assert cell.mean("test/acc") == pytest.approx(statistics.fmean(accs))
        assert cell.std("test/acc") == pytest.approx(statistics.stdev(accs))  # sample std, n-1
        assert cell.interval("test/acc") == pytest.approx(t_half(accs))  # Student's t, 2 degrees of freedom
        assert cell_text(cell, "test/acc") == f"{statistics.fmean(accs):.4f} ± {t_half(accs):.4f} (3)"


def test_best_cell_per_column_is_marked(sweep):
    grid = table_grid(build_table(load_runs([sweep]), ["test/acc", "params"]))
    assert grid[0] == ["lr", "model=cnn test/acc", "model=cnn params", "model=mlp test/acc", "model=mlp params"]
    best = {(row[0], j) for row in grid[1:] for j, cell in enumerate(row[1:]) if isinstance(cell, Best)}
    assert best == {("0.1", 0), ("0.1", 2)}  # cnn 0.897 > 0.837, mlp 0.823 > 0.723; params has no better
    lines = markdown(grid).splitlines()
    cnn, mlp = ACC[("0.1", "cnn")], ACC[("0.1", "mlp")]
    assert lines[3] == (f"| 0.1 | **0.8967 ± {t_half(cnn):.4f} (3)** | 1,000 (3) "  # a count all runs agree on
                        f"| **0.8233 ± {t_half(mlp):.4f} (3)** | 1,000 (3) |")


def test_values_sort_as_numbers_and_lists_of_numbers_as_lists_of_numbers():
    values = ["[512,512]", "relu", "[16]", "0.1", "[4]", None, "1e-3", "[1024]", "[512]"]
    assert sorted(values, key=value_order) == [None, "1e-3", "0.1", "[4]", "[16]", "[512]", "[512,512]", "[1024]",
                                               "relu"]


def test_rows_and_cols_can_be_chosen(sweep):
    table = build_table(load_runs([sweep]), ["test/acc"], rows=["model"], cols=["lr"])
    assert (table.row_keys, table.col_keys) == (["model"], ["lr"])
    table = build_table(load_runs([sweep]), ["test/acc"], rows=["model"])
    assert (table.row_keys, table.col_keys) == (["model"], ["lr"])
    table = build_table(load_runs([sweep]), ["test/acc"], cols=["seed"])  # seeds as columns: no longer repeats
    assert (table.row_keys, table.col_keys) == (["lr", "model"], ["seed"])
    assert table.cell(("0.1", "cnn"), ("2",)).values("test/acc") == [0.91]


def test_every_run_appears_with_its_status(tmp_path):
    root = tmp_path / "sweep"
    fake_run(root, ["lr=0.1", "seed=0"], accs=(0.5, 0.6))
    fake_run(root, ["lr=0.1", "seed=1"], accs=(0.5, 0.7))
    fake_run(root, ["lr=0.1", "seed=2"], status="interrupted", accs=(0.4,))
    fake_run(root, ["lr=1", "seed=0"], status="diverged", accs=(0.1,),
             diverged={"reason": "train loss is nan", "epoch": 1})
    fake_run(root, ["lr=1", "seed=1"], status="failed", accs=(), error="Traceback ...\nValueError: bad value\n")
    fake_run(root, ["lr=1", "seed=2"], accs=(), summary=False)  # started, killed before any summary
    out = tmp_path / "report"
    assert main([str(root), "--out", str(out), "--metric", "test/acc"]) == 0
    md = (out / "report.md").read_text()
    assert "6 runs: 2 completed, 1 diverged, 1 failed, 1 interrupted, 1 running" in md
    assert f"| 0.1 | 0.6500 ± {t_half([0.6, 0.7]):.4f} (2); 1 interrupted |" in md
    assert "| 1 | 1 diverged; 1 failed; 1 running |" in md
    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["status"] for r in rows) == ["completed", "completed", "diverged", "failed", "interrupted",
                                                 "running"]
    notes = {r["status"]: r["note"] for r in rows}
    assert notes["diverged"] == "train loss is nan" and notes["failed"] == "ValueError: bad value"


def test_largest_learning_rate_that_did_not_diverge_per_model(tmp_path):
    root = tmp_path / "sweep"
    for model, diverging in (("mlp", ("1", "10")), ("cnn", ("10",))):
        for lr in ("0.01", "0.1", "1", "10"):
            for seed in (0, 1):
                status = "diverged" if lr in diverging and (seed == 1 or lr == "10") else "completed"
                fake_run(root, [f"lr={lr}", f"model={model}", f"seed={seed}"], status=status)
    assert lr_notes(load_runs([root])) == [
        "model=cnn: largest lr that did not diverge: 1 (diverged: 10)",
        "model=mlp: largest lr that did not diverge: 0.1 (diverged: 1, 10)",  # one seed of lr=1 diverged
    ]


def test_target_recomputes_epochs_to_target_from_the_curves(tmp_path):
    root = tmp_path / "sweep"
    fake_run(root, ["lr=0.1"], accs=(0.5, 0.7, 0.9))
    fake_run(root, ["lr=0.01"], accs=(0.5, 0.6, 0.65))
    default = {r.overrides["lr"]: r.value("epochs_to_target") for r in load_runs([root])}
    lower = {r.overrides["lr"]: r.value("epochs_to_target") for r in load_runs([root], target=0.6)}
    assert default == {"0.1": 3, "0.01": None} and lower == {"0.1": 2, "0.01": 2}
    seconds = {r.overrides["lr"]: r.value("seconds_to_target") for r in load_runs([root], target=0.6)}
    assert seconds == {"0.1": 3.0, "0.01": 3.0}  # two epochs of 1.5 s


def test_best_of_any_curve_is_computed_from_metrics(tmp_path):
    root = tmp_path / "sweep"
    fake_run(root, ["lr=0.1"], accs=(0.5, 0.9, 0.7))
    (run,) = load_runs([root])
    assert run.value("best/test/acc") == 0.9 and run.value("best/train/loss") == pytest.approx(2.0 / 3)


def test_files_plots_and_formats(sweep, tmp_path, capsys):
    assert main([str(sweep), "--format", "latex"]) == 0
    printed = capsys.readouterr().out
    assert r"\begin{tabular}" in printed and r"$\pm$" in printed and r"\textbf{" in printed
    for name in ("report.md", "report.csv", "runs.csv", "report.tex", "plots/loss.png", "plots/acc.png",
                 "plots/test_acc_vs_lr.png"):
        assert (sweep / name).is_file() and (sweep / name).stat().st_size > 0, name
    assert len(load_runs([sweep])) == 12  # the report's own files are not runs
    rows = list(csv.DictReader(io.StringIO((sweep / "report.csv").read_text())))
    cell = next(r for r in rows if (r["lr"], r["model"]) == ("0.1", "cnn"))
    assert float(cell["mean(test/acc)"]) == pytest.approx(statistics.fmean(ACC[("0.1", "cnn")]))
    assert (cell["n(test/acc)"], cell["statuses"], cell["runs"]) == ("3", "completed:3", "3")
    assert main([str(sweep), "--format", "csv", "--metric", "test/acc,best/val/acc"]) == 0
    printed = capsys.readouterr().out
    assert "mean(best/val/acc)" in printed and "mean(params)" not in printed


def test_unknown_keys_and_empty_folders_are_errors(sweep, tmp_path):
    with pytest.raises(ReportError, match="no run has that override"):
        main([str(sweep), "--rows", "nosuch"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no runs there"):
        main([str(tmp_path / "empty")])


def test_runs_of_a_partial_sweep_not_started_yet_are_shown(tmp_path):
    root = tmp_path / "sweep"
    fake_run(root, ["lr=0.1", "seed=0", "epochs=2"])
    fake_run(root, ["lr=0.01", "seed=0", "epochs=2"], status="interrupted")
    hydra = {"sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
             "overrides": {"task": ["lr=0.1,0.01", "seed=0,1", "epochs=2"], "hydra": []}}
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
    runs = load_runs([root])
    assert sorted((r.overrides["lr"], r.overrides["seed"], r.status) for r in runs) == [
        ("0.01", "0", "interrupted"), ("0.01", "1", "not started"), ("0.1", "0", "completed"),
        ("0.1", "1", "not started")]
    grid = table_grid(build_table(runs, ["test/acc"]))
    assert grid[1:] == [["0.01", "1 interrupted; 1 not started"], ["0.1", "0.6000 (1); 1 not started"]]


def test_numbers_spelled_differently_are_one_value():
    from dlbench.runs import canonical, parse_override

    assert parse_override("lr=1e-3") == parse_override("lr=0.001") == ("lr", "0.001")
    assert canonical("10") == "10" and canonical("cnn") == "cnn" and canonical("[64,64]") == "[64,64]"


def test_a_grokking_step_never_reached_reads_so(tmp_path):
    root = tmp_path / "sweep"
    fake_run(root, ["dataset.train_fraction=0.3"], **{"grokking/val_step": None, "grokking/gap": None})
    fake_run(root, ["dataset.train_fraction=0.5"], **{"grokking/val_step": 3000, "grokking/gap": 2500})
    grid = table_grid(build_table(load_runs([root]), ["grokking/val_step", "grokking/gap"]))
    assert grid[1][1:] == ["never (1 run)", "never (1 run)"]
    assert [str(cell) for cell in grid[2][1:]] == ["3,000 (1)", "2,500 (1)"]


def test_default_columns_are_the_ones_the_runs_task_names(tmp_path):
    from dlbench.report import default_metrics
    from dlbench.tasks import LM, REGRESS

    text = tmp_path / "text"
    for hidden, ppl in (("64", 5.2), ("256", 4.4)):
        fake_run(text, [f"model.hidden={hidden}"], target_metric="val/ppl", report_columns=LM.report_columns("val/ppl"),
                 **{"val/ppl": ppl, "best/val/ppl": ppl})
    runs = load_runs([text])
    assert default_metrics(runs) == ["val/ppl", "best/val/ppl", "tokens_per_second", "params", "wall_seconds"]
    grid = table_grid(build_table(runs, ["best/val/ppl"]))
    assert [type(row[1]) is Best for row in grid[1:]] == [False, True]  # rows 64, 256: the lower ppl is best
    fits = tmp_path / "fits"
    fake_run(fits, ["model.depth=1"], target_metric="val/loss", report_columns=REGRESS.report_columns("val/loss"))
    assert default_metrics(load_runs([fits]))[:2] == ["test/loss", "best/val/loss"]
    older = tmp_path / "older"  # a summary from before report_columns: accuracy's columns
    fake_run(older, ["lr=0.1"])
    assert default_metrics(load_runs([older])) == ["test/acc", "best/val/acc", "epochs_to_target", "params",
                                                  "wall_seconds"]


def test_provenance_is_shown_once_where_runs_agree_and_counted_where_they_differ(tmp_path):
    root = tmp_path / "sweep"
    common = {"command": "dlbench train -m lr=0.1,1", "dlbench": "0.1.0", "python": "3.11.7", "torch": "2.14.1",
              "cuda": None, "cudnn": None, "device_name": "Some CPU", "cwd_git": None,
              "git": {"root": "/src/dlbench", "commit": "0123456789abcdef", "dirty": True}}
    fake_run(root, ["lr=0.1"], provenance={**common, "host": "a", "started": "2026-12-03T10:00:00+00:00"})
    fake_run(root, ["lr=1"], provenance={**common, "host": "b", "started": "2026-12-03T10:05:00+00:00"})
    fake_run(root, ["lr=10"])  # written before dlbench recorded provenance
    out = tmp_path / "report"
    assert main([str(root), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    section = md[md.index("## Provenance"):]
    assert md.count("## Provenance") == 1 and "(2 of 3 runs)" in section
    assert "- command: `dlbench train -m lr=0.1,1`\n" in section
    assert "- git: 0123456789ab with uncommitted changes (/src/dlbench)\n" in section
    assert "- host: a (1 run); b (1 run)\n" in section
    assert "- started: 2026-12-03T10:00:00+00:00 to 2026-12-03T10:05:00+00:00" in section


def test_a_cell_within_the_noise_of_its_columns_best_is_marked_and_the_differences_listed(sweep, tmp_path):
    """lr 0.01 against lr 0.1: for the CNN Welch's p is 0.065 (within the noise, marked), for the MLP
    0.0067 (beyond it, unmarked); the section lists both with scipy's interval of the difference."""
    runs = load_runs([sweep])
    table = build_table(runs, ["test/acc"])
    grid = table_grid(table)
    row = next(line for line in grid[1:] if line[0] == "0.01")
    for (lr, model), text in zip([("0.01", "cnn"), ("0.01", "mlp")], row[1:]):
        p = scipy_stats.ttest_ind(ACC[(lr, model)], ACC[("0.1", model)], equal_var=False).pvalue
        assert text.endswith(WITHIN_NOISE) == (p >= 0.05), (model, p, text)
    assert row[1].endswith(WITHIN_NOISE) and not row[2].endswith(WITHIN_NOISE)  # one of each: the test sees both
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out), "--metric", "test/acc"]) == 0
    md = (out / "report.md").read_text()
    assert "95% confidence interval over seeds" in md and "Welch's t-test" in md
    section = md.split("## Differences from the best")[1].split("##")[0]
    mlp = scipy_stats.ttest_ind(ACC[("0.01", "mlp")], ACC[("0.1", "mlp")], equal_var=False)
    interval = mlp.confidence_interval(0.95)
    assert (f"| test/acc | lr=0.01 | model=mlp | lr=0.1 | -0.1000 | {interval.low:.4f} to {interval.high:.4f} "
            f"| {mlp.pvalue:.3g} | yes |") in section
    assert "| test/acc | lr=0.01 | model=cnn | lr=0.1 | -0.0600 |" in section and section.count("| no |") == 1
    with open(out / "report.csv") as f:
        cells = {(r["lr"], r["model"]): r for r in csv.DictReader(f)}
    assert float(cells[("0.01", "mlp")]["p_vs_best(test/acc)"]) == pytest.approx(mlp.pvalue)
    assert cells[("0.1", "mlp")]["p_vs_best(test/acc)"] == ""  # the best is not tested against itself
    assert float(cells[("0.1", "mlp")]["ci95(test/acc)"]) == pytest.approx(t_half(ACC[("0.1", "mlp")]))


def test_one_run_per_cell_says_it_has_no_interval(tmp_path):
    root = tmp_path / "sweep"
    for lr, acc in (("0.1", 0.8), ("0.01", 0.7)):
        fake_run(root, [f"lr={lr}"], accs=(acc,))
    out = tmp_path / "report"
    assert main([str(root), "--out", str(out), "--metric", "test/acc"]) == 0
    md = (out / "report.md").read_text()
    assert "One run per cell has no interval and no test" in md and "`seeds=3`" in md
    assert "| 0.01 | 0.7000 (1) |" in md and "Differences from the best" not in md
