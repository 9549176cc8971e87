"""The search section of a sweep's report: every trial (state, drawn values, value, epochs trained),
the best as a command line to run again, and Optuna's optimisation-history and parameter-importance
figures; read from the journal and the runs' summaries."""
import shlex
import warnings
from pathlib import Path

from dlbench.errors import UserError
from dlbench.report import fmt, markdown
from dlbench.runs import Run
from dlbench.search import JOURNAL, TRIAL_KEY


def is_search_folder(sweep_dir: Path) -> bool:
    return (Path(sweep_dir) / JOURNAL).is_file()


def _value(value) -> str:
    """A drawn value: a number by its size, anything else (a model name, a list of widths) as written."""
    return fmt(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _key(override: str) -> str:
    return override.split("=")[0].lstrip("+~")


def _recorded_task(sweep_dir: Path) -> list[str]:
    from dlbench.overrides import read_multirun

    try:
        return [str(o) for o in read_multirun(sweep_dir)["hydra"]["overrides"]["task"]]
    except (UserError, KeyError, TypeError):
        return []


def section(sweep_dir: Path, runs: list[Run], out: Path) -> list[str]:
    import optuna

    from dlbench.search.study import storage

    store = storage(Path(sweep_dir))
    lines = []
    for summary in optuna.get_all_study_summaries(store, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=store)
        lines += _trials(study, sweep_dir, runs)
        if any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
            lines += _best(study, sweep_dir) + _figures(study, out)
        else:
            lines += ["No trial completed: no best yet.", ""]
    return lines


def _trials(study, sweep_dir: Path, runs: list[Run]) -> list[str]:
    """The table of trials: state, drawn values, value, epochs its run trained."""
    trials = study.get_trials(deepcopy=False)
    keys = sorted({k for t in trials for k in t.params})
    by_trial = {r.overrides.get(TRIAL_KEY): r for r in runs}
    grid = [["trial", "state", *keys, "value", "epochs trained"]]
    for t in trials:
        run = by_trial.get(str(t.number))
        grid.append([str(t.number), t.state.name.lower(), *[_value(t.params.get(k)) for k in keys], fmt(t.value),
                     fmt(run.summary.get("epochs_completed") if run else None)])
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return [f"## Search: {study.study_name}", "",
            f"{len(trials)} trials ({', '.join(f'{n} {s}' for s, n in counts.items())}), "
            f"{study.direction.name.lower()} the objective; a pruned trial's value is its last report. The study is "
            f"in `{JOURNAL}` (Optuna's journal): `pip install optuna-dashboard && optuna-dashboard "
            f"{Path(sweep_dir) / JOURNAL}` shows it live.", "", markdown(grid), ""]


def _best(study, sweep_dir: Path) -> list[str]:
    """The best trial, as the command line that trains it again."""
    from dlbench.search.space import value_text

    best = study.best_trial
    own = [o for o in best.user_attrs.get("overrides") or [f"{k}={value_text(v)}" for k, v in best.params.items()]
           if _key(o) != TRIAL_KEY]  # its drawn values and the space's fixed ones
    base = [o for o in _recorded_task(sweep_dir) if _key(o) not in {*map(_key, own), TRIAL_KEY}]
    command = shlex.join(["dlbench", "train", *base, *own])
    return [f"Best: trial {best.number}, value {fmt(best.value)}. To train it again:", "", "```", command, "```", ""]


def _figures(study, out: Path) -> list[str]:
    """Optuna's optimisation history and parameter importances, as PNGs under out/search/."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as views

    from dlbench.figures import pyplot, save_figure

    pyplot()  # matplotlib set up as dlbench draws (no display needed)
    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    lines = []
    for name, draw, needs in (("optimization_history", views.plot_optimization_history, 1),
                              ("param_importances", views.plot_param_importances, 2)):
        if len(completed) < needs:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # the figures' API may change: optuna<6 pinned
                ax = draw(study)
        except (ValueError, RuntimeError) as err:  # too few distinct values to judge importance
            lines += [f"{name.replace('_', ' ')}: not drawn ({err})", ""]
            continue
        path = out / "search" / f"{study.study_name}_{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure(ax.figure, path)
        lines += [f"![{name}]({path.relative_to(out)})", ""]
    return lines
