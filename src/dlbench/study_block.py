"""A config's `study:` block, its keys and the analyses it may name, checked without torch before
anything runs (dlbench.schema calls `check`; dlbench.study does what the block says):

    study:
      about: one line for `dlbench list`
      quick: [epochs=2, dataset.limit=2000]   # overrides for quick=true (the user's own still win)
      rows: [lr]                              # the table: override keys down and across,
      cols: [model.hidden]                    # and the summary numbers in each cell
      metrics: [test/acc, epochs_to_target]
      curves: [loss, acc]                     # per-epoch metrics drawn for every run
      analyses:                               # each one {kind: <one of ANALYSIS_KINDS>, its arguments}
        - {kind: interpolate, a: {batch_size: 64}, b: {batch_size: 1024}}
"""
from dlbench.choices import ANALYSIS_KINDS
from dlbench.errors import ConfigError

LAYOUT_KEYS = ("about", "quick", "rows", "cols", "metrics", "curves", "target", "analyses")


def check(layout: dict | None) -> None:
    """A study's layout: known keys, known analyses (the schema calls this before anything runs)."""
    if not layout:
        return
    for key in layout:
        if key not in LAYOUT_KEYS:
            raise ConfigError(f"study.{key}", layout[key], "is not a key of a study",
                              f"valid: {', '.join(LAYOUT_KEYS)}")
    for i, spec in enumerate(layout.get("analyses") or []):
        if not isinstance(spec, dict) or spec.get("kind") not in ANALYSIS_KINDS:
            raise ConfigError(f"study.analyses[{i}]", spec, "names no analysis",
                              f"write {{kind: NAME, ...}}; valid kinds: {', '.join(ANALYSIS_KINDS)}")
