#!/usr/bin/env bash
# Create .venv with dstune installed (add --test for the test tools, the OpenRLHF 0.11.2 wheel in .wheels/
# and the GPU wheelhouses .whl/ and .whl-cpXY/ that the acceptance tests install from).
# Machines without an NVIDIA GPU get the light CPU build of torch, pinned,
# because an unpinned torch pulls a multi-GB CUDA build; GPU machines keep
# the torch they have or take the registry's CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    pip install torch
  else
    pip install "torch==2.13.0"
  fi
fi
pip install -e ".${extras}"
if [ -n "$extras" ] && ! ls .wheels/openrlhf-0.11.2-*.whl >/dev/null 2>&1; then
  # The OpenRLHF tests run the released parser and DeepSpeed-config code from this wheel (read from the zip,
  # never installed: its dependencies pull vLLM and CUDA builds).
  pip download --no-deps "openrlhf==0.11.2" -d .wheels
fi
if [ -n "$extras" ]; then
  # The GPU node's wheelhouse (.whl, Python 3.12) and the same set for this venv's Python: the wheelhouse and
  # acceptance-rehearsal tests install from them with --no-index, as the offline node does.
  pyv=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  ls .whl/deepspeed-*.whl >/dev/null 2>&1 || bash scripts/make_wheelhouse.sh
  ls ".whl-cp${pyv/./}"/deepspeed-*.whl >/dev/null 2>&1 || bash scripts/make_wheelhouse.sh --python-version "$pyv" --dest ".whl-cp${pyv/./}"
fi
echo "dstune set up in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))" >&2
