from dlbench.artifacts import append_metrics, build_summary, plot_curves, write_json_atomic
from dlbench.callbacks import Callback


class RunFiles(Callback):
    """metrics.jsonl after every epoch, summary.json at start, every epoch and end, plots at the end."""

    def on_run_start(self, state) -> None:
        write_json_atomic(state.run_dir / "summary.json", build_summary(state))

    def on_epoch_end(self, state, metrics: dict) -> None:
        append_metrics(state.run_dir, metrics)
        write_json_atomic(state.run_dir / "summary.json", build_summary(state))

    def on_run_end(self, state) -> None:
        write_json_atomic(state.run_dir / "summary.json", build_summary(state))
        if state.history:
            title = f"{state.cfg.model.name} on {state.cfg.dataset.name}  {' '.join(state.overrides)}"
            plot_curves(state.history, state.run_dir / "plots" / "curves.png", title=title)
