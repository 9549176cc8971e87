"""Where a run's numbers came from: the code (dlbench's version, the git commit of the project and
of the directory the command ran in, dirty or not), the software under it (Python, torch, CUDA,
cuDNN), the machine (host, device) and the command, recorded in summary.json as `provenance`.
Collected once per process that trains the run; a resumed run's is the last process's."""
import os
import platform
import shlex
import socket
import subprocess
import sys
from contextlib import suppress
from functools import cache
from datetime import datetime
from pathlib import Path

from dlbench import __version__

COMMAND = "DLBENCH_COMMAND"  # `dlbench train` sets it: a launcher's worker process has other argv
ROOT = Path(__file__).resolve().parents[3]  # an editable install's repository (a wheel's: site-packages)
PROJECT = ROOT if (ROOT / ".git").exists() and (ROOT / "src" / "dlbench").is_dir() else None


@cache  # once per process: a sweep's runs in one process share it
def git_state(folder: Path | None) -> dict | None:
    """{"root", "commit", "dirty"} of the git repository folder is in, or None (no folder, no
    repository, no git). Dirty: a tracked file differs from the commit."""
    if folder is None:
        return None

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    with suppress(OSError, subprocess.SubprocessError):
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))  # a changed tracked file
        return {"root": git("rev-parse", "--show-toplevel"), "commit": commit, "dirty": dirty}
    return None


@cache
def device_name(device) -> str:
    import torch  # here: the CLI imports COMMAND without torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple GPU (MPS) on {platform.machine()}"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def provenance(device) -> dict:
    """What summary.json records of where the run's numbers came from (a torch.device's run)."""
    import torch

    project, cwd = git_state(PROJECT), git_state(Path.cwd())
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "dlbench": __version__,
        "git": project,
        "cwd_git": cwd if cwd != project else None,  # the user's own repository, when they run from one
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cudnn": cudnn if torch.cuda.is_available() else None,
        "device_name": device_name(device),
        "host": socket.gethostname(),
        "command": os.environ.get(COMMAND) or shlex.join(sys.argv),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
