"""A run: its folder, its state and its life, the same under every launcher.

- `lifecycle`: Run, which opens a run folder (lock, claim, check, build, resume, `.hydra/`,
  failure recording) and trains it in phases (begin, begin_epoch, after_step, end_epoch, finish).
- `outcome`: what a launcher's job returns for a run, and what a sweep's runs tell the CLI.
- `build`: the run's data, model, optimizer, ... and callbacks, from its config.
- `check`: what the config asks of the model and data, checked before anything is built.
- `state`, `checkpoint`, `runfolder`, `recorder`: what a run holds, saves, owns and writes.

This file imports nothing: `dlbench report` reads run folders through `runfolder` without torch.
"""
