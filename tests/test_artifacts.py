import json
import math

from dlbench.artifacts import (append_metrics, epochs_to_target, jsonable, read_json, read_metrics,
                               truncate_metrics, write_json_atomic)


def test_summary_is_replaced_whole_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"status": "running"})
    write_json_atomic(path, {"status": "completed", "loss": float("nan")})
    assert read_json(path) == {"status": "completed", "loss": None}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_non_finite_numbers_become_null():
    assert jsonable({"a": [1.0, math.inf, {"b": -math.inf}]}) == {"a": [1.0, None, {"b": None}]}
    json.dumps(jsonable({"x": math.nan}), allow_nan=False)


def test_truncate_keeps_the_epochs_a_checkpoint_covers(tmp_path):
    for epoch in (1, 2, 3):
        append_metrics(tmp_path, {"epoch": epoch, "train/loss": 1.0 / epoch})
    assert [m["epoch"] for m in truncate_metrics(tmp_path, 2)] == [1, 2]
    assert [m["epoch"] for m in read_metrics(tmp_path)] == [1, 2]


def test_epochs_to_target_counts_wall_seconds_up_to_that_epoch():
    history = [{"epoch": 1, "val/acc": 0.7, "epoch_seconds": 2.0}, {"epoch": 2, "val/acc": 0.86, "epoch_seconds": 3.0},
               {"epoch": 3, "val/acc": 0.9, "epoch_seconds": 1.0}]
    assert epochs_to_target(history, "val/acc", 0.85) == (2, 5.0)
    assert epochs_to_target(history, "val/acc", 0.95) == (None, None)
