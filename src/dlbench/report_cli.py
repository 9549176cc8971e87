"""`dlbench report FOLDER ...`: its arguments, and which report the folders get: a study's own for
one study's sweep folder asked nothing else, the table asked for otherwise."""
import argparse
from pathlib import Path

from dlbench.report import report
from dlbench.paths import user_folder
from dlbench.search.report import is_search_folder
from dlbench.study import finish, read_study


def parse_args(argv: list[str]) -> argparse.Namespace:
    def keys(text: str) -> list[str]:
        return [k for k in text.split(",") if k]

    parser = argparse.ArgumentParser(prog="dlbench report", description="The results table and plots of sweeps.")
    parser.add_argument("folders", nargs="+", type=Path, help="sweep folders, run folders, or folders of sweeps")
    parser.add_argument("--out", type=Path,
                        help="where report.md, report.csv and plots/ go (default: the first folder)")
    parser.add_argument("--rows", type=keys, help="override keys for the rows, e.g. lr (comma-separated)")
    parser.add_argument("--cols", type=keys, help="override keys for the columns, e.g. model")
    parser.add_argument("--metric", action="append", type=keys,
                        help="summary metrics for the cells (repeat or comma-separate); default: test/acc, "
                             "best/val/acc (best/test/acc without a validation split), epochs_to_target, params, "
                             "wall_seconds")
    parser.add_argument("--target", type=float, help="recompute epochs_to_target for this accuracy from the curves")
    parser.add_argument("--format", choices=("md", "csv", "latex"), default="md", help="what is printed")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.out is not None:
        args.out = user_folder(args.out, "--out")
    one = args.folders[0] if len(args.folders) == 1 else None
    if one is not None and (read_study(one) is not None or is_search_folder(one)) and not (args.rows or args.cols or args.metric or args.target):  # the study's own
        print(finish(args.folders[0], out=args.out, fmt_name=args.format))
        return 0
    metrics = [m for group in args.metric for m in group] if args.metric else None
    print(report(args.folders, metrics, args.rows, args.cols, args.target, args.format, args.out))
    return 0
