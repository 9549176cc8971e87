"""The search's sweep. A worker claims a trial, launches its run through Hydra's launcher, tells the
study how the run ended (`completed` and `diverged`: its objective; `pruned`; `failed`), and claims
the next, until the study holds n_trials. Claims happen under a lock file in the sweep folder, so that
several workers share one journal without running a trial twice: the threads of one search
(`n_jobs`, with a launcher that trains out of this process: joblib, submitit), or several `dlbench
train` processes started into one folder, on one machine or on a cluster's shared file system.

A worker holds a lock file of its own for each trial it runs; a trial the journal calls running
whose lock nobody holds was left by a killed worker, and the next claim takes it over: its run
resumes from its checkpoint (`dlbench resume SWEEP` is one such worker)."""
import fcntl
import logging
import os
import sys
import threading
from pathlib import Path

from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf

from dlbench.run.runfolder import read_summary_or_none
from dlbench.search import HOLDS, LOCK, TRIAL_KEY
from dlbench.search.study import build_pruner, build_sampler, check, direction, storage
from dlbench.status import Status

log = logging.getLogger("dlbench")


class SearchSweeper:
    def __init__(self, direction: str = "maximize", study_name: str = "search", n_trials: int = 20, n_jobs: int = 1,
                 sampler=None, pruner=None, params=None, enqueue=None) -> None:
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.held, self.guard = {}, threading.Lock()

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def sweep(self, arguments: list[str]) -> list:
        import optuna
        from optuna.trial import TrialState

        node = self.config.hydra.sweeper
        self.space = check(node, arguments, self.config.hydra.launcher, say=False)  # said before Hydra started
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweep_dir / HOLDS).mkdir(exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")  # what `dlbench resume` runs again
        self.study = optuna.create_study(
            storage=storage(self.sweep_dir), study_name=str(node.study_name), load_if_exists=True,
            sampler=build_sampler(node.get("sampler"), self.space), pruner=build_pruner(node.get("pruner")),
            direction=direction(node))
        with _flock(self.sweep_dir / LOCK):  # a new study: the points to try first (another worker may have begun it)
            if not self.study.get_trials(deepcopy=False):
                for params in self.space.enqueued(node.get("enqueue")):
                    self.study.enqueue_trial(params)
        done = len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))
        print(f"dlbench: search {node.study_name}: {done} of {self.n_trials} trials in {self.sweep_dir}", file=sys.stderr)
        if self.n_jobs == 1:
            returns = self._work()
        else:
            results: list[list] = [[] for _ in range(self.n_jobs)]
            errors: list[BaseException] = []
            workers = [threading.Thread(target=self._thread, args=(results[i], errors)) for i in range(self.n_jobs)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            if errors:
                raise errors[0]
            returns = [r for part in results for r in part]
        self._say_best()
        return returns

    def _thread(self, into: list, errors: list) -> None:
        try:
            into.extend(self._work())
        except BaseException as err:  # noqa: BLE001 - the sweep raises it once every worker is done
            errors.append(err)

    def _work(self) -> list:
        returns = []
        while (claimed := self._claim()) is not None:
            number, overrides = claimed
            try:  # the job's number is the trial's: "sweep run 8/24" is trial 7 in every worker and after a resume
                (ret,) = self.launcher.launch([overrides], initial_job_idx=number)
                returns.append(ret)
                self._tell(number, ret)
            finally:
                self._release(number)
        return returns

    # ---------------------------------------------------------------- claims

    def _claim(self) -> tuple[int, list[str]] | None:
        """A trial to run: one a killed worker left, else a new one while the study has fewer
        than n_trials; None when there is none."""
        with self.guard, _flock(self.sweep_dir / LOCK):
            trials = self.study.get_trials(deepcopy=False)
            for t in trials:
                if t.state.name == "RUNNING" and "overrides" in t.user_attrs and self._hold(t.number):
                    print(f"dlbench: search: trial {t.number} was left running; it resumes", file=sys.stderr)
                    return t.number, list(t.user_attrs["overrides"])
            if sum(t.state.name != "WAITING" for t in trials) >= self.n_trials:  # WAITING: enqueued, not begun
                return None
            trial = self.study.ask(fixed_distributions=self.space.distributions)
            overrides = [f"{TRIAL_KEY}={trial.number}", *self.space.overrides(trial.params)]
            trial.set_user_attr("overrides", overrides)
            self._hold(trial.number)
            return trial.number, overrides

    def _hold(self, number: int) -> bool:
        """Lock the trial's own file; False if another worker holds it."""
        fd = os.open(self.sweep_dir / HOLDS / f"trial-{number}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.held[number] = fd
        return True

    def _release(self, number: int) -> None:
        fd = self.held.pop(number, None)
        if fd is not None:
            os.close(fd)

    # ---------------------------------------------------------------- results

    def _tell(self, number: int, ret) -> None:
        """How the trial's run ended, from its summary (the run may have trained in another process)."""
        from optuna.trial import TrialState

        run_dir = Path(str(ret.hydra_cfg.hydra.runtime.output_dir)) if ret.hydra_cfg is not None else None
        summary = (read_summary_or_none(run_dir) if run_dir else None) or {}
        status = summary.get("status")
        if status == Status.INTERRUPTED:
            return  # left running: a resumed search takes it over
        value = ret._return_value if ret.status == JobStatus.COMPLETED else None
        if status == Status.PRUNED:
            self.study.tell(number, state=TrialState.PRUNED)
        elif status in (Status.COMPLETED, Status.DIVERGED) and value is not None:
            self.study.tell(number, float(value))
        else:
            self.study.tell(number, state=TrialState.FAIL)

    def _say_best(self) -> None:
        try:
            best = self.study.best_trial
        except ValueError:  # no trial completed
            print("dlbench: search: no trial completed", file=sys.stderr)
            return
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
        print(f"dlbench: search: best trial {best.number}: {best.value:.4f} with {params}", file=sys.stderr)


class _flock:
    """An exclusive lock on a file, held while the block runs (blocking: claims are short)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)
