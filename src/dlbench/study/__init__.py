"""Studies: an experiment file with a `study:` node is one command that trains, analyses and reports.

`dlbench train experiment=NAME` runs the file's sweep (its `hydra.sweeper.params`; the file sets
`hydra.mode: MULTIRUN`), then writes the sweep's report.md laid out as the study says, with the
sections its analyses add. `quick=true` puts the study's `quick` overrides before the user's: the
same study, small enough for a first look and for the tests. Every other multirun gets the
default report. The code here serves every study; a study itself is data (its block: see
dlbench.study_block). expansion.py turns the command line into the sweep, layout.py writes the
report after it, analyses.py holds the analyses.

Reading a study needs no torch: only the analyses that load weights import it.
"""
from dlbench.study.analyses import ANALYSES, analysis
from dlbench.study.expansion import expand, studies, study_config, sweep_params
from dlbench.study.layout import finish, read_study
from dlbench.study_block import LAYOUT_KEYS, check

__all__ = ["ANALYSES", "LAYOUT_KEYS", "analysis", "check", "expand", "finish", "read_study", "studies",
           "study_config", "sweep_params"]
