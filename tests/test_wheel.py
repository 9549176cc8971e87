"""`pip install .` (a real wheel, not editable) then `dlbench train` in an empty folder: the configs
ship inside the wheel and nothing reads the repository. Slow: a wheel build and a short run.

The wheel goes into a fresh venv under tmp_path that borrows its dependencies (torch, hydra, ...)
from the interpreter running the tests through a .pth file, so nothing is downloaded. The .pth lists
those site-packages folders as plain paths: Python does not process the .pth files inside them, so
the repository's editable install (its .pth naming src/) stays out, and the venv's own site-packages
comes first anyway. The test checks that the imported dlbench and its conf/ are the wheel's."""
import json
import os
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _run(cmd, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _dependency_dirs() -> list[str]:
    """The site-packages folders the test interpreter takes its dependencies from."""
    paths = sysconfig.get_paths()
    dirs = [paths["purelib"], paths["platlib"], *site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(dirs) if Path(d).is_dir()]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """(bin folder of a venv with the repository's wheel installed, the env to run it with)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # a clean environment: no PYTHONPATH pointing at src/, no progress bars
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(CI="1", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))

    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", dist, REPO],
         cwd=tmp, env=env)
    wheel = next(dist.glob("dlbench-*.whl"))

    root = tmp / "venv"
    venv.create(root, with_pip=False, symlinks=os.name != "nt")
    bin_dir = root / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    own = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=tmp, env=env).stdout.strip())
    (own / "_dlbench_test_deps.pth").write_text("".join(f"{d}\n" for d in _dependency_dirs()))
    # pip (borrowed through the .pth) installs into the venv; --ignore-installed: the repository's
    # dlbench, visible through the .pth, is neither taken as already there nor uninstalled
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
          "--disable-pip-version-check", "-q", wheel], cwd=tmp, env=env)
    return bin_dir, python, env


def test_wheel_uses_its_own_code_and_configs(wheel_env, tmp_path):
    _, python, env = wheel_env
    out = _run([python, "-c", "import json, dlbench, dlbench.config as c; "
                              "print(json.dumps([dlbench.__file__, str(c.CONF_DIR)]))"],
               cwd=tmp_path, env=env).stdout
    module, conf = map(Path, json.loads(out.strip().splitlines()[-1]))
    venv_root = python.parent.parent
    assert module.is_relative_to(venv_root), module
    assert conf.is_relative_to(venv_root) and conf.name == "conf" and conf.parent == module.parent, conf
    assert (conf / "train.yaml").is_file()
    # every config of the repository is in the wheel
    shipped = {p.relative_to(conf).as_posix() for p in conf.rglob("*.yaml")}
    assert shipped == {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}


def test_installed_dlbench_trains_in_an_empty_folder(wheel_env, tmp_path):
    bin_dir, _, env = wheel_env
    dlbench = bin_dir / ("dlbench.exe" if os.name == "nt" else "dlbench")
    assert dlbench.is_file()

    listed = _run([dlbench, "list"], cwd=tmp_path, env=env).stdout
    models = next(line for line in listed.splitlines() if line.startswith("model:")).split()[1:]
    assert {"mlp", "cnn", "lenet"} <= set(models)
    assert "digits" in next(line for line in listed.splitlines() if line.startswith("dataset:"))

    _run([dlbench, "train", "dataset=digits", "model.hidden=[16]", "epochs=1", "trainer.progress=false"],
         cwd=tmp_path, env=env)
    assert [p.name for p in tmp_path.iterdir()] == ["outputs"]
    runs = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs
    run = runs[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert (run / ".hydra" / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
