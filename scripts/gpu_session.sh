#!/usr/bin/env bash
# One stage of the GPU measurements (issue 14), run on the device machine from the repository root
# with .gpu/ carried (scripts/gpu_kit.sh makes it here):
#
#   tests       pytest -m gpu: training on CUDA against the CPU, 16-bit, compile, channels-last,
#               the fused launcher, resume, host syncs (about 5 min)
#   epoch       bench_epoch.py device=cuda: the default MLP's epoch against its compute-only bound
#   precision   bench_precision.py: bf16, fp16, channels-last and compile against fp32, CNN and ResNet-18
#   fused       bench_fused.py --device cuda: 8 and 64 function fits, fused against one at a time
#   all         every stage above, in that order (longer than one call's 10 minutes: split it)
#   study NAME [OVERRIDE ...]
#               a study's full form (scripts/run_studies.py): stopped (Ctrl-C) after $BUDGET seconds
#               (default 540), it resumes where it stopped when called again on the same, still
#               warm machine; its docs/studies/NAME/ comes back as $OUT/NAME.tgz. Small models
#               share the GPU well: char_lm hydra/launcher=joblib hydra.launcher.n_jobs=6
#
# Each stage's output goes to $OUT/<stage>.log (and the terminal). The machine has torch but no
# package registry: the wheels in .gpu/whl are installed into /tmp/site, the repository's src/ is
# put on PYTHONPATH (no install), the data goes where dlbench looks for it.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?"a stage: tests, epoch, precision, fused, all or study NAME"}
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
if [ ! -d /tmp/site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src:$PWD PYTHONUNBUFFERED=1 CI=1
export DLBENCH_TIMEMACHINE=$PWD/.gpu/timemachine.txt DLBENCH_DATA=/tmp/dlbench-data
mkdir -p /usr/share/datasets/fashion-mnist && cp -n .gpu/fashion-mnist/*.gz /usr/share/datasets/fashion-mnist/
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'and no CUDA GPU')"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true

run_stage() {
  case $1 in
    tests) python3 -m pytest -m gpu -p no:cacheprovider tests/test_gpu.py ;;
    epoch) python3 scripts/bench_epoch.py --repeats 3 device=cuda ;;
    precision) python3 scripts/bench_precision.py --device cuda ;;
    fused) python3 scripts/bench_fused.py --only fit,fit64,mlp --device cuda ;;
    study)
      local name=${2:?"study NAME"}
      timeout --signal=INT "${BUDGET:-540}" python3 scripts/run_studies.py "$name" -- "${@:3}" ||
        echo "stopped after ${BUDGET:-540} s: call again on this machine to resume"
      if [ -f "docs/studies/$name/report.md" ]; then tar czf "$out/$name.tgz" -C docs/studies "$name"; fi ;;
    *) echo "unknown stage $1: tests, epoch, precision, fused, all or study NAME" >&2; return 2 ;;
  esac
}
if [ "$stage" = study ]; then
  echo "== study $*" | tee "$out/study.log"
  run_stage "$@" 2>&1 | tee -a "$out/study.log"
  exit
fi
stages=$stage
[ "$stage" = all ] && stages="tests epoch precision fused"
failed=""
for s in $stages; do
  echo "== $s" | tee "$out/$s.log"
  run_stage "$s" 2>&1 | tee -a "$out/$s.log" || failed="$failed $s"
done
if [ -n "$failed" ]; then echo "failed:$failed" >&2; exit 1; fi
