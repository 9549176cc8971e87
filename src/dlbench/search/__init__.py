"""dlbench's own search (`hydra/sweeper=search`): Optuna's ask-and-tell over a space written as Hydra's
sweep overrides, the study kept in a journal file in the sweep folder (no server, resumable, shared by
several workers), and each run reporting its judging metric after every epoch so that a pruner can
stop it early.

    space.py    the search space: interval, tag(log, interval), choice, range; fixed keys
    study.py    sampler, pruner, the journal and the check of a sweeper's config before anything runs
    sweeper.py  the sweep: claim a trial (a new one, or one a killed worker left), launch it, tell its end
    pruning.py  inside the run: report each epoch's value, stop when the pruner says so (status `pruned`)
    report.py   the report's search section: the trials, the best as a command line, Optuna's figures
"""
JOURNAL = "search.journal"  # the Optuna study, in the sweep folder
LOCK = ".search.lock"       # held while a worker claims a trial
HOLDS = ".search"           # one lock file per trial, held by the worker that runs it
TRIAL_KEY = "trial"         # the override that tells a run which trial it is (conf/train.yaml: trial)
