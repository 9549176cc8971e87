"""`dlbench list`: what configs can name, group by group, and the studies. No torch: the model
names are read from the source."""
from dlbench.config import GROUPS, group_options, registered_models
from dlbench.study import studies


def list_main(args: list[str]) -> int:
    for group in GROUPS:
        options = group_options(group)
        print(f"{group + ':':<13}{' '.join(options) if options else '(none yet)'}")
    unconfigured = sorted(registered_models() - set(group_options("model")))
    if unconfigured:
        print(f"{'':<13}(registered without a config: {' '.join(unconfigured)})")
    print("\nstudies (dlbench train experiment=NAME; quick=true for a one-minute version):")
    for name, about in studies().items():
        print(f"  {name:<26}{about}")
    return 0
