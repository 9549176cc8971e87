"""FusedLauncher, hydra/launcher=fused: Hydra's launcher protocol; each run prepared in its folder,
the fusable ones trained in groups, the rest one at a time. And KeptCompositions, the sweeper's
compositions kept so that no run is composed twice."""
import logging
import sys
from pathlib import Path
from typing import Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from omegaconf import open_dict

from dlbench.launchers.fused.epoch import train_group
from dlbench.launchers.fused.grouping import group_key, why_not_fused
from dlbench.launchers.fused.members import Ledger, Member, MemberLogs, own_rng
from dlbench.run.lifecycle import Run, log_handler
from dlbench.run.outcome import job_return, say_failure


class KeptCompositions:
    """Hydra's sweeper composes every run's config to check it can (validate_batch_is_legal), and
    throws it away; a launcher then composes it again. Composing costs a good part of a second
    per run, more than a small model's whole training, so this launcher keeps the sweeper's and
    takes it (each once) instead of composing a second time."""

    def __init__(self, loader) -> None:
        self.compose, self.kept = loader.load_sweep_config, {}
        loader.load_sweep_config = self.composing  # the instance's, for the sweeper that shares it

    def composing(self, master_config, sweep_overrides):
        cfg = self.compose(master_config, sweep_overrides)
        self.kept[id(master_config), tuple(sweep_overrides)] = cfg
        return cfg

    def take(self, master_config, overrides: list[str]):
        kept = self.kept.pop((id(master_config), tuple(overrides)), None)
        return kept if kept is not None else self.compose(master_config, overrides)


class FusedLauncher:
    """Hydra's launcher protocol: every run is prepared in its folder as `dlbench train` would
    (lock, claim, build, resume), then the fusable ones train in groups and the rest one at a time."""

    def __init__(self, max_group: int = 64) -> None:
        self.max_group = max_group

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config
        self.composed = KeptCompositions(hydra_context.config_loader)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        self.data_cache: dict = {}
        self.ledger = Ledger()
        jobs = []
        for i, overrides in enumerate(job_overrides):
            sweep_config = self.composed.take(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = sweep_config.hydra.job.num = initial_job_idx + i
            with self.ledger.only([]):  # the runs prepared so far wait
                jobs.append(run_job(hydra_context=self.hydra_context, task_function=self.prepare, config=sweep_config,
                                    job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
            if isinstance(jobs[-1].return_value, Member):
                self.ledger.add(jobs[-1].return_value)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        members = [m for m in (job.return_value for job in jobs) if isinstance(m, Member)]
        for member, job in zip(members, [j for j in jobs if isinstance(j.return_value, Member)]):
            member.job = job
        self.train(members)
        self.data_cache.clear()
        return jobs

    def prepare(self, cfg) -> "Member | float | None":
        """Inside the run's Hydra job: the run opened in its folder, or, where it does not proceed,
        what its job returns (as under any launcher: dlbench.run.outcome)."""
        hydra_cfg = HydraConfig.get()
        run_dir, overrides = Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)
        try:
            run = Run.open(cfg, run_dir, overrides, self.data_cache)
        except (KeyboardInterrupt, Exception) as err:
            return job_return(cfg, err)
        if run.previous is not None:
            run.close()
            return job_return(cfg, run.previous)
        return Member(run, own_rng(run.state.device), log_handler(run_dir / "train.log"), hydra_cfg)

    def train(self, members: list[Member]) -> None:
        groups: dict[tuple, list[Member]] = {}
        alone = []
        for m in members:
            why = why_not_fused(m.state)
            if why is None:
                groups.setdefault(group_key(m.state), []).append(m)
            else:
                alone.append(m)
                print(f"dlbench: {m.name} trains alone: {why}", file=sys.stderr)
        batches = [g[i:i + self.max_group] for g in groups.values() for i in range(0, len(g), self.max_group)]
        for g in batches:
            if len(g) == 1:
                alone.append(g[0])
        batches = [g for g in batches if len(g) > 1]
        root = logging.getLogger()
        hydra_files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
        for h in hydra_files:  # the last job's log: each member writes its own instead
            root.removeHandler(h)
        logs = MemberLogs()
        root.addHandler(logs)
        try:
            for i, group in enumerate(batches, 1):
                print(f"dlbench: fused group {i}/{len(batches)}: {len(group)} runs as one model", file=sys.stderr)
                self.run_group(group, logs)
            for m in alone:
                self.run_alone(m, logs)
        finally:
            root.removeHandler(logs)
            for m in members:
                m.logs.close()
                m.run.close()

    def run_group(self, group: list[Member], logs: MemberLogs) -> None:
        try:
            with self.ledger.only(group):
                train_group(group, logs, self.ledger)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # each member failed with the group: each run's log keeps the traceback
            for m in group:
                logs.current = m.logs
                say_failure(err, m.state.run_dir, f"{m.name} (in a fused group of {len(group)})")
        finally:
            logs.current = None
        for m in group:
            self.returned(m)

    def run_alone(self, m: Member, logs: MemberLogs) -> None:
        logs.current = m.logs
        try:
            with self.ledger.only([m]):
                m.run.fit()
        except KeyboardInterrupt:
            raise
        except Exception as err:
            say_failure(err, m.state.run_dir, m.name)
        finally:
            logs.current = None
        self.returned(m)

    def returned(self, m: Member) -> None:
        m.job.return_value = job_return(m.state.cfg, m.state.summary(), m.hydra)
        m.job.status = JobStatus.COMPLETED
