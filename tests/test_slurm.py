"""SLURM for real: `hydra/launcher=slurm` submits a sweep to the one-node cluster of
scripts/cluster.sh, and a run that reaches its time limit is requeued and resumes from its
checkpoint to the numbers of a run never stopped. Slow (about a minute); skipped, with the script's
reason, where no cluster can be had (not root, no apt-get, a daemon that does not start, or another
SLURM setup on this machine, which the tests never submit to)."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlbench.artifacts import read_metrics
from tests.conftest import dlbench, runs_in

pytestmark = pytest.mark.slow

CLUSTER = Path(__file__).resolve().parents[1] / "scripts" / "cluster.sh"
# what the one-node cluster has: no GPU (gpus_per_node=1 would be refused by sbatch), a core and a
# little memory per run; the time-limit signal 60 s before a 5-minute limit, which no run here reaches
ON_CLUSTER = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
              "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=5",
              "hydra.launcher.signal_delay_s=60"]
# dropout: the resumed run needs the global RNG state from its checkpoint too
RUN = ["dataset=digits", "model.hidden=[16]", "model.dropout=0.3", "epochs=300", "trainer.threads=1"]
TIMING = {"epoch_seconds"}


@pytest.fixture(scope="module")
def cluster():
    """The cluster, started for these tests and stopped after them; one that already ran is used
    and left running."""
    status = subprocess.run([CLUSTER, "status"], capture_output=True, text=True, timeout=60)
    if status.returncode == 3:
        pytest.skip(f"{status.stdout.strip()}: the tests submit only to scripts/cluster.sh's cluster")
    started_here = status.returncode != 0
    if started_here:
        start = subprocess.run([CLUSTER, "start"], capture_output=True, text=True, timeout=900)
        if start.returncode == 2:  # the script's "cannot here", with its reason
            pytest.skip(start.stderr.strip())
        assert start.returncode == 0, start.stdout + start.stderr
    yield
    if started_here:
        subprocess.run([CLUSTER, "stop"], capture_output=True, text=True, timeout=120, check=True)


def scontrol_job(job_id: str) -> str:
    """What slurmctld says of a job, finished ones included (for MinJobAge, 5 minutes): no sacct,
    which needs an accounting database the one-node cluster does not have."""
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_a_sweep_runs_as_slurm_jobs(cluster, tmp_path):
    proc = dlbench("train", "-m", "dataset=digits", "model.hidden=[16]", "epochs=1", "lr=0.1,0.01",
                   "trainer.threads=1", *ON_CLUSTER, "--into", "sweep", cwd=tmp_path, timeout=180)
    sweep = tmp_path / "sweep"
    runs = runs_in(sweep)
    assert len(runs) == 2 and all(read_summary(run)["status"] == "completed" for run in runs)
    assert (sweep / "report.md").is_file()
    # submitit wrote one sbatch script (a job array) for the partition, and each run's job its log
    (script,) = (sweep / ".submitit").glob("*/*_submission.sh")
    assert "#SBATCH --partition=debug" in script.read_text()
    array = script.parent.name
    logs = {log.parent.name: log.read_text() for log in (sweep / ".submitit").glob(f"{array}_*/*_log.out")}
    assert sorted(logs) == [f"{array}_0", f"{array}_1"]
    assert all(f"job_id={task}," in log and "Job completed successfully" in log for task, log in logs.items())
    assert scontrol_job(array).count("JobState=COMPLETED") == 2  # SLURM ran them, not a local fallback
    # the cluster has no accounting: submitit's failed-sacct warning comes once, not at every poll
    assert proc.stderr.count("Bypassing sacct error") <= 1


def test_a_run_out_of_time_is_requeued_and_resumes_to_the_same_numbers(cluster, tmp_path):
    """At a job's time limit SLURM first sends it USR2 (submitit's `--signal=USR2@signal_delay_s`);
    submitit then requeues the job (one of its max_num_timeout) and exits it, and the requeued job
    trains the run on from its last checkpoint. The test sends that signal itself once two epochs
    are recorded: SLURM's limits are whole minutes, and when the signal comes depends on how fast
    this machine trains. With a short timeout_min, submitit counts the signal as a time-out."""
    sweep = tmp_path / "sweep"
    with open(tmp_path / "sweep.log", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dlbench", "train", "-m", *RUN, *ON_CLUSTER, "--into", "sweep"],
                                cwd=tmp_path, env={**os.environ, "CI": "1"}, stdout=out, stderr=subprocess.STDOUT)
    job_id = None
    try:
        job_id = wait_for_job(sweep, proc)
        wait_for_epochs(sweep, 2, proc)
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
        assert proc.wait(timeout=240) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:  # the test failed while the sweep waited: end it and its job
            proc.kill()
            proc.wait()
            if job_id:
                subprocess.run(["scancel", job_id])
    (run,) = runs_in(sweep)
    job_log = (sweep / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
    assert "this job is timed-out" in job_log and f"Requeued job {job_id}" in job_log
    assert "Restarts=1 " in scontrol_job(job_id)
    resumed = re.search(r"resuming \S+ from its checkpoint after epoch (\d+)", (run / "train.log").read_text())
    assert resumed and 2 <= int(resumed[1]) < 300

    straight = tmp_path / "straight"
    dlbench("train", *RUN, "--into", str(straight), cwd=tmp_path)
    strip = lambda ms: [{k: v for k, v in m.items() if k not in TIMING} for m in ms]  # noqa: E731
    assert strip(read_metrics(run)) == strip(read_metrics(straight))
    keys = ("status", "epochs_completed", "train/loss", "val/acc", "test/acc", "best/val/acc", "best/epoch")
    assert [read_summary(run)[k] for k in keys] == [read_summary(straight)[k] for k in keys]


def wait_for_job(sweep: Path, proc: subprocess.Popen, timeout: float = 120) -> str:
    """The SLURM job id of a one-run sweep: submitit names its folder in .submitit/ after it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        folders = [p.name for p in (sweep / ".submitit").glob("*") if p.name.isdigit()]
        if folders:
            return folders[0]
        time.sleep(0.2)
    raise AssertionError(f"no SLURM job for {sweep} (dlbench exited {proc.poll()})")


def wait_for_epochs(sweep: Path, epochs: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(len(p.read_text().splitlines()) >= epochs for p in sweep.glob("*/metrics.jsonl")):
            return
        time.sleep(0.1)
    raise AssertionError(f"the run in {sweep} did not record {epochs} epochs (dlbench exited {proc.poll()})")


def test_a_search_runs_its_trials_as_slurm_jobs_n_jobs_at_a_time(cluster, tmp_path):
    """dlbench's search on the cluster: hydra.sweeper.n_jobs=2 keeps two trials in flight, each its own
    SLURM job, all reading and writing the one journal in the sweep folder."""
    import optuna

    from dlbench.search.study import storage

    dlbench("train", "-m", "experiment=lr_search", "dataset=digits", "model.hidden=[16]", "epochs=2",
            "hydra.sweeper.params.model=mlp", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
            "trainer.threads=1", *ON_CLUSTER, "--into", "search", cwd=tmp_path, timeout=300)
    study = optuna.load_study(study_name="lr_search", storage=storage(tmp_path / "search"))
    done = sorted((t.number, t.state.name) for t in study.trials)  # ASHA may prune: a result like a completion
    assert [n for n, _ in done] == [0, 1, 2, 3] and {state for _, state in done} <= {"COMPLETE", "PRUNED"}
    jobs = {p.parent.name.split("_")[0] for p in (tmp_path / "search" / ".submitit").glob("*/*_submission.sh")}
    assert len(jobs) == 4 and all("JobState=COMPLETED" in scontrol_job(job) for job in jobs)
