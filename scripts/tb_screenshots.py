"""Screenshots of TensorBoard as a person opens it on a folder of runs: the Time Series, HParams
and Scalars tabs, taken by headless Chromium (Debian's `chromium` package) from a TensorBoard this
script starts on a free local port and stops again.

    python scripts/tb_screenshots.py outputs/sweeps/<sweep> [--out DIR] [--size 1600x1000]

The PNGs go to DIR (default: <logdir>/tensorboard_screenshots/), one per tab, for a person to look
at; what the tests check of the same views is in tests/test_tensorboard_ui.py.
"""
import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TABS = ("timeseries", "hparams", "scalars")
# as root, and on a machine with no way out: no sandbox, no GPU, none of Chromium's own connections
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_loaded(port: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    """The number of runs TensorBoard lists, once it answers and lists some."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"tensorboard exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=5) as answer:
                runs = json.loads(answer.read())
            if runs:
                return len(runs)
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"tensorboard listed no runs within {timeout:.0f} s: is there an event file under the logdir?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir", type=Path)
    parser.add_argument("--out", type=Path, help="where the PNGs go (default: <logdir>/tensorboard_screenshots)")
    parser.add_argument("--size", default="1600x1000", help="the browser window, WIDTHxHEIGHT")
    parser.add_argument("--wait", type=float, default=25.0, help="seconds of page time to let each tab load")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        sys.exit("no Chromium found: install Debian's `chromium` package (apt-get install chromium)")
    if not args.logdir.is_dir():
        sys.exit(f"{args.logdir}: no such folder; give a run or sweep folder (outputs/sweeps/<sweep>)")
    out = args.out or args.logdir / "tensorboard_screenshots"
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(args.logdir), "--host",
                              "127.0.0.1", "--port", str(port), "--reload_interval", "0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        runs = wait_until_loaded(port, board)
        width, height = args.size.split("x")
        for tab in TABS:
            path = out / f"{tab}.png"
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                f"--window-size={width},{height}", f"--virtual-time-budget={int(args.wait * 1000)}",
                                f"--screenshot={path.resolve()}", f"http://127.0.0.1:{port}/#{tab}"],
                               check=True, capture_output=True, timeout=args.wait * 4 + 60)
            print(f"{path}  ({tab}, {runs} runs)")
    finally:
        board.terminate()
        board.wait(timeout=30)


if __name__ == "__main__":
    main()
