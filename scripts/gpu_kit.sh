#!/usr/bin/env bash
# Gathers here what a GPU session needs on a machine with no package registry (issue 14): the device
# machines lent to some sessions have Python 3.12, torch, torchvision, tensorboard, matplotlib,
# scikit-learn and joblib, but not Hydra. Into .gpu/ (git-ignored): the pure-Python wheels dlbench
# needs beyond that image (hydra-core, omegaconf, antlr4, and the joblib launcher, which runs a
# study's small models side by side on the GPU; submitit and Optuna are not needed there),
# Fashion-MNIST's original files and the Time Machine text. Then, with the device tool:
# run(command="scripts/gpu_session.sh tests", carry=[".gpu"]), and the other stages (see there).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf .gpu && mkdir -p .gpu/whl .gpu/fashion-mnist
$PY -m pip download -q --no-deps --only-binary=:all: -d .gpu/whl \
  "hydra-core==$($PY -c 'import hydra; print(hydra.__version__)')" \
  "omegaconf==$($PY -c 'import omegaconf; print(omegaconf.__version__)')" \
  "hydra-joblib-launcher==$($PY -c 'import importlib.metadata as m; print(m.version("hydra-joblib-launcher"))')"
$PY -m pip wheel -q --no-deps -w .gpu/whl antlr4-python3-runtime==4.9.3  # published as a source archive only
cp /usr/share/datasets/fashion-mnist/*.gz .gpu/fashion-mnist/  # make data put them there
text=${DLBENCH_TIMEMACHINE:-../shared/data/timemachine.txt}
cp "$text" .gpu/timemachine.txt
du -sh .gpu && ls .gpu/whl
