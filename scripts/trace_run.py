"""Which of dlbench's files one run and one fused epoch pass through: the files a reader opens to
follow them, and the calls that cross from one file to another (distinct caller -> callee file
pairs), as traced by sys.setprofile on a real run of digits.

    python scripts/trace_run.py            # prints both counts and the files

"One epoch" is the second epoch of a 3-epoch run: traced from its on_epoch_start to the third's,
so it holds the epoch's training, evaluation, records and checkpoint. The fused epoch is that of
member 0 of a 2-run fused sweep (lr=0.1,0.05): the group's shared steps and both members' epochs.
"""
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dlbench  # noqa: E402
from dlbench.callbacks import Callback  # noqa: E402

SRC = str(Path(dlbench.__file__).parent) + os.sep
OVERRIDES = ["dataset=digits", "model=mlp", "model.hidden=[32]", "trainer.progress=false", "logger.enabled=true"]


class Trace:
    def __init__(self):
        self.files: set[str] = set()
        self.edges: Counter = Counter()

    def __call__(self, frame, event, arg):
        if event != "call" or not frame.f_code.co_filename.startswith(SRC):
            return
        here = frame.f_code.co_filename[len(SRC):]
        self.files.add(here)
        back = frame.f_back
        if back is not None and back.f_code.co_filename.startswith(SRC):
            there = back.f_code.co_filename[len(SRC):]
            if there != here:
                self.edges[there, here] += 1


class TraceEpoch(Callback):
    """Traces from the start of epoch `epoch` (0-based) to the start of the next, in the run whose
    lr is `lr` (a fused group's other members pass through the same code)."""

    def __init__(self, trace: Trace, epoch: int = 1, lr: float | None = None):
        self.trace, self.epoch, self.lr = trace, epoch, lr

    def on_epoch_start(self, state) -> None:
        if self.lr is not None and state.cfg.lr != self.lr:
            return
        if state.epoch == self.epoch:
            sys.setprofile(self.trace)
        elif state.epoch == self.epoch + 1:
            sys.setprofile(None)


def with_callback(callback: Callback) -> None:
    """Every run built from now on gets `callback` besides its own (and no earlier one of these)."""
    module = sys.modules.get("dlbench.run.build") or sys.modules["dlbench.train"]
    original = getattr(module, "_untraced", module.default_callbacks)
    module._untraced = original
    module.default_callbacks = lambda cfg: [*original(cfg), callback]


def main() -> None:
    from dlbench import cli  # noqa: F401  (imports what `dlbench train` imports)
    from dlbench.launch import train_main

    try:
        import dlbench.run.build  # noqa: F401
    except ImportError:
        import dlbench.train  # noqa: F401
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        whole = Trace()
        sys.setprofile(whole)
        train_main([*OVERRIDES, "epochs=3", "lr=0.1", "--into", "one"])
        sys.setprofile(None)
        results["one run, start to end"] = whole
        epoch = Trace()
        with_callback(TraceEpoch(epoch))
        train_main([*OVERRIDES, "epochs=3", "lr=0.1", "--into", "two"])
        results["one epoch of a run"] = epoch
        fused = Trace()
        with_callback(TraceEpoch(fused, lr=0.05))
        train_main(["-m", *OVERRIDES, "epochs=3", "lr=0.1,0.05", "hydra/launcher=fused", "--into", "sweep"])
        results["one epoch of a fused group"] = fused
    for name, trace in results.items():
        print(f"{name}: {len(trace.files)} files, {len(trace.edges)} distinct file-to-file calls")
        print("   " + " ".join(sorted(trace.files)))


if __name__ == "__main__":
    main()
