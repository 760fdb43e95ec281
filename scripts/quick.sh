#!/usr/bin/env bash
# Every script under scripts/ in its quick mode, so a benchmark breaks in CI and not on the day its figure is
# needed (tests/test_scripts.py holds that each script is named here). Figures printed here come from a
# deliberately small run: they check that the code path works, not how fast it is.
#   bash scripts/quick.sh            (needs `scripts/setup.sh --test`; .ci/run calls it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
run() {  # run SCRIPT ARGS...: the command, its last lines, and its time
  local start=$SECONDS
  echo "== $*"
  "$PY" "$@" 2>&1 | tail -n 4
  echo "   ($((SECONDS - start)) s)"
}
export DS_ACCELERATOR=cpu
run scripts/bench_costmodel.py --quick
run scripts/bench_accuracy.py --quick --quiet
run scripts/bench_search.py bench --quick
run scripts/bench_openrlhf.py --repeats 1
run scripts/openrlhf_paper_rows.py
run scripts/import_shipped_recipes.py --check
run scripts/measure_activations.py --check
run scripts/bench_profile.py --trials 1 --step sft --gpus 1 --warmup 0 --steps 1
run scripts/bench_parallel.py --trials 2 --time-scale 0.2
run scripts/code_shape.py --check
# Run elsewhere in CI, in full: scripts/make_wheelhouse.sh by setup.sh --test, and scripts/gpu_acceptance.sh
# --rehearse by tests/calibration/test_acceptance.py. setup.sh and check.sh are .ci/run itself.
