"""The schema covers every knob of every config, and its choices are the code's."""
import errno
import json

import pytest
from omegaconf import OmegaConf

from dlbench import artifacts, choices, schema
from dlbench.callbacks import Callback
from dlbench.config import GROUPS, compose, group_options
from dlbench.errors import ConfigError
from dlbench.models.init import INITS
from dlbench.models.layers import ACTIVATIONS
from dlbench.train import run
from tests.conftest import digits_cfg

# keys that are not knobs: what builds a node, and the names the groups give themselves
NOT_KNOBS = ("_target_", "_partial_", "name", "study")  # study: a layout, checked by its own rule (study.check)
# options that only compose with a dataset of their own
NEEDS = {"model": {"token_mlp": ["dataset=modular"], "transformer": ["dataset=modular"]},
         "experiment": {}}


def test_every_choice_the_schema_checks_is_dlbench_choices_own_tuple():
    """No copies: each Choice knob (but the booleans) checks against a tuple of dlbench.choices,
    the one the implementing module keys its table by."""
    defined = {id(v) for v in vars(choices).values() if isinstance(v, tuple)}
    rules = [rule for rule in schema.KNOBS.values()]
    rules += [inner for rule in rules for inner in (getattr(rule, "rules", ()) + (getattr(rule, "item", None),))]
    copies = [rule.options for rule in rules if isinstance(rule, schema.Choice) and rule is not schema.BOOL
              and rule.options != ("auto",) and id(rule.options) not in defined]
    assert not copies, f"choices defined in schema.py rather than dlbench.choices: {copies}"
    assert schema.KNOBS["model.activation"].options is choices.ACTIVATIONS
    assert set(ACTIVATIONS) == set(choices.ACTIVATIONS) and set(INITS) | {"default"} == set(choices.INITS)


def test_a_table_that_differs_from_its_choices_fails_naming_the_difference():
    assert choices.implement(("a", "b"), {"b": 2, "a": 1}) == {"b": 2, "a": 1}
    assert choices.implement(("auto", "a"), {"a": 1}, extra=("auto",)) == {"a": 1}
    with pytest.raises(RuntimeError, match=r"missing \['b'\], unknown \['c'\]"):
        choices.implement(("a", "b"), {"a": 1, "c": 3})


def _leaves(tree: dict, prefix: str = ""):
    """Dotted keys of the values set in a config (not interpolated from another key: the schema
    checks those under their own name)."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        elif key not in NOT_KNOBS and not (isinstance(value, str) and value.startswith("${")):
            yield f"{prefix}{key}"


@pytest.mark.slow  # composes every option of every group (test_config builds each one unmarked)
@pytest.mark.parametrize("group", [g for g in GROUPS if g not in ("experiment", "variant")])
def test_every_knob_of_every_option_is_in_the_schema_and_its_default_passes(group):
    for option in group_options(group):
        cfg = compose([f"{group}={option}", *NEEDS.get(group, {}).get(option, [])])
        tree = OmegaConf.to_container(cfg, resolve=False)
        unchecked = [k for k in _leaves(tree) if k not in schema.KNOBS and not k.startswith("dataset.imbalance")]
        assert not unchecked, f"{group}={option}: no rule for {unchecked}"
        schema.check(cfg)  # every shipped default is valid


@pytest.mark.parametrize("launcher", ["basic", "fused", "joblib", "slurm", "submitit_local"])
def test_every_launchers_shipped_defaults_pass_its_knob_rules_and_a_bad_knob_is_refused(launcher):
    """A launcher chosen with nothing else set is never refused (submitit's own defaults hold nulls)."""
    from dlbench.launch import check_hydra

    check_hydra(["-m", "lr=0.1,0.2", f"hydra/launcher={launcher}"])
    knob = {"fused": "max_group", "joblib": "n_jobs", "slurm": "nodes", "submitit_local": "nodes"}.get(launcher)
    if knob:
        with pytest.raises(ConfigError, match=rf"hydra.launcher.{knob}=0"):
            check_hydra(["-m", "lr=0.1,0.2", f"hydra/launcher={launcher}", f"hydra.launcher.{knob}=0"])


def test_each_rule_refuses_its_wrong_type_and_names_the_key():
    for key, rule in schema.KNOBS.items():
        wrong = {"Num": "abc", "Choice": "nosuch", "Text": 3, "ListOf": "abc", "AnyOf": "abc"}[type(rule).__name__]
        assert rule.problem(wrong) is not None, key
        assert str(ConfigError(key, wrong, rule.problem(wrong), rule.fix())).startswith(f"{key}={wrong}: ")


class FullDisk(Callback):
    """From the start of the second epoch on, no file can be written (ENOSPC)."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch

    def on_epoch_start(self, state):
        if state.epoch == 1:
            def full(*args, **kwargs):
                raise OSError(errno.ENOSPC, "No space left on device")
            self.monkeypatch.setattr(artifacts.Path, "write_text", full)
            self.monkeypatch.setattr(artifacts, "append_jsonl", full)


def test_a_full_disk_leaves_the_last_good_files(in_tmp, extra_callback, monkeypatch):
    extra_callback(FullDisk(monkeypatch))
    with pytest.raises(OSError, match="No space left"):
        run(digits_cfg("epochs=3", "logger=none"), run_dir=in_tmp / "r")
    monkeypatch.undo()
    summary = json.loads((in_tmp / "r" / "summary.json").read_text())  # whole, and the first epoch's
    assert summary["epochs_completed"] == 1 and summary["status"] == "running"
    assert [m["epoch"] for m in artifacts.read_metrics(in_tmp / "r")] == [1]
    assert not list((in_tmp / "r").glob(".*.tmp"))  # no temporary file left behind
