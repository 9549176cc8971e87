"""trainer.threads=auto: the cores shared fairly between the dlbench runs training on this machine.

Torch's OpenMP threads spin while they wait for work. Two runs that each keep one thread per core
spin against each other: on a 2-core machine a pair of default runs went 20x slower per epoch
than one run alone, where one thread each costs almost nothing. So each training process puts
its pid in a folder that every run on the machine reads (the temp dir, or $DLBENCH_CPU_DIR), and
every second or so sets its thread count to its share of the cores: all of them (torch's own
default) alone, cores // n when n runs train. A run that ends, or dies, leaves the count (a dead
pid is dropped), and the others take the cores back at their next look. A cluster task that was
given its cores (submitit's cpus_per_task) keeps that many threads instead.
"""
import ctypes
import hashlib
import os
import tempfile
import time
from pathlib import Path

import torch

from dlbench.callbacks import Callback

CHECK_SECONDS = 1.0  # between looks at the folder: a listdir, no device sync
DEFAULT_THREADS = torch.get_num_threads()  # torch's choice for a lone process, before anyone changes it


def registry() -> Path:
    """One folder per set of cores a process may run on: processes pinned to other cores (other
    cluster jobs on one node, say) do not share with this one."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    key = hashlib.sha1(",".join(map(str, cpus)).encode()).hexdigest()[:10]
    return Path(os.environ.get("DLBENCH_CPU_DIR") or Path(tempfile.gettempdir()) / "dlbench-cpu") / key


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and sharing the cores
        return True
    return True


def training_processes(folder: Path) -> int:
    """The live training processes registered in folder (stale entries of dead ones are removed)."""
    count = 0
    for entry in folder.glob("*"):
        if entry.name.isdigit() and alive(int(entry.name)):
            count += 1
        else:
            entry.unlink(missing_ok=True)
    return count


def share(cores: int, processes: int) -> int:
    return max(1, cores // max(1, processes))


class ShareThreads(Callback):
    """Registers this process while its run trains and keeps its torch threads at its share of
    `cores` (default: torch's own thread count for a lone process)."""

    def __init__(self, cores: int | None = None, folder: Path | None = None):
        self.cores = cores or DEFAULT_THREADS
        self.folder = folder or registry()
        self.entry = self.folder / str(os.getpid())
        self.next_look = 0.0

    def on_run_start(self, state) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.entry.touch()
        self.adjust()

    def on_step(self, state, step: dict) -> None:
        if time.monotonic() >= self.next_look:
            self.adjust()

    def on_epoch_start(self, state) -> None:
        self.adjust()

    def adjust(self) -> None:
        self.next_look = time.monotonic() + CHECK_SECONDS
        self.entry.touch()  # put back if someone cleaned the folder
        threads = share(self.cores, training_processes(self.folder))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)

    def on_run_end(self, state) -> None:
        self.entry.unlink(missing_ok=True)


# ---------------------------------------------------------------- denormal floats

def flush_denormals(flush: bool) -> None:
    """trainer.flush_denormal: floats below float32's smallest normal (1.2e-38) computed as zero (the
    CPU's FTZ and DAZ flags), or not. A weight decaying towards zero (L2, weight decay, a long run
    at a small rate) can become denormal, and a matmul against such a matrix runs up to 100x
    slower. The flags belong to each thread, and torch.set_flush_denormal sets only the calling
    one's: OpenMP's worker threads keep the flags they were created with. So they are set in one
    parallel region of the OpenMP runtime torch uses, on as many threads as this machine has
    cores (those a later, larger thread count wakes too). Without GNU OpenMP (macOS, Windows) the
    calling thread's are set."""
    torch.set_flush_denormal(flush)
    try:
        gomp = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libgomp.so.1"))
    except OSError:
        return

    @ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    def each_thread(_):
        torch.set_flush_denormal(flush)

    gomp.GOMP_parallel(each_thread, None, ctypes.c_uint(max(os.cpu_count() or 1, torch.get_num_threads())),
                       ctypes.c_uint(0))
