#!/usr/bin/env bash
# Fill a wheelhouse with what the offline GPU node lacks (needs a package registry; the node has none).
#
#   scripts/make_wheelhouse.sh [--python-version 3.12] [--dest .whl]
#
# The node's python3 (3.12) has torch 2.11+cu130, transformers 5.17, huggingface_hub 1.33,
# tokenizers 0.23, accelerate, nvidia-ml-py, pandas, scipy, rich, psutil and pyyaml, but no deepspeed,
# optuna, pydantic or hjson. This carries those, and the Hybrid Engine stack of constraints/he.txt:
# transformers 4.48.3 imports only beside huggingface_hub < 1.0 and tokenizers < 0.22, so all three
# travel and shadow the image's (DeepSpeed 0.19.8 drops OPT's inference policy under transformers 5.17).
# huggingface_hub 0.36 and transformers 4.48 import requests, which hub 1.x no longer needs: it travels too.
#
# DeepSpeed 0.19.8 is published as a source archive only; DS_BUILD_OPS=0 builds a pure-Python wheel
# here whose ops are JIT-built with nvcc on the node (scripts/gpu_acceptance.sh builds them up front).
# --python-version 3.11 --dest .whl-cp311 makes the same set for this CPU machine's venv (Python 3.11),
# which the rehearsal (scripts/gpu_acceptance.sh --rehearse) installs: the compiled wheels (pydantic-core,
# sqlalchemy, msgpack, charset-normalizer) differ per Python; the pure-Python ones are the same files.
# On the node (the device command does this):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=".whl"
PYVER="3.12"
while [ $# -gt 0 ]; do
  case "$1" in
    --dest) [ $# -ge 2 ] || { echo "make_wheelhouse.sh: --dest needs a directory" >&2; exit 2; }; DEST="$2"; shift 2 ;;
    --python-version) [ $# -ge 2 ] || { echo "make_wheelhouse.sh: --python-version needs X.Y" >&2; exit 2; }
      PYVER="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make_wheelhouse.sh: unknown argument '$1' (use --dest DIR, --python-version X.Y or --help)" >&2; exit 2 ;;
  esac
done
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && PY="${PYTHON:-.venv/bin/python}"
LIMIT_MIB=40

# One pinned version of each distribution (what this project's own venv runs, and constraints/he.txt).
WHEELS=(
  "optuna==5.1.0" "alembic==1.20.1" "sqlalchemy==2.1.9" "mako==1.4.3" "colorlog==6.12.0"
  "pydantic==2.14.4" "pydantic-core==2.50.5" "annotated-types==0.8.0" "typing-inspection==0.4.5"
  "typing-extensions==4.16.0" "hjson==3.1.0" "msgpack==1.2.4" "py-cpuinfo==9.0.0" "einops==0.8.2"
  "transformers==4.48.3" "tokenizers==0.21.4" "huggingface-hub==0.36.2"
  "requests==2.34.2" "urllib3==2.8.0" "idna==3.21" "certifi==2026.10.19.post1" "charset-normalizer==3.5.3"
)

mkdir -p "$DEST"
rm -f "$DEST"/*.whl
PLATFORMS=()
for n in 17 24 27 28 31 34; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$PYVER" --implementation cp "${PLATFORMS[@]}" -d "$DEST" "${WHEELS[@]}"

# DeepSpeed: a pure-Python wheel built from the source archive, with no ops compiled in. Its setup.py
# imports torch: build beside this venv's torch first (an isolated build would fetch torch again).
DS_BUILD_OPS=0 "$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
    -w "$DEST" "deepspeed==0.19.8" \
  || DS_BUILD_OPS=0 "$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$DEST" "deepspeed==0.19.8"

dups=$(ls "$DEST"/*.whl | sed 's#.*/##' | awk -F- '{print tolower($1)}' | tr '_' '-' | sort | uniq -d)
if [ -n "$dups" ]; then
  echo "make_wheelhouse.sh: several wheels of $dups in $DEST" >&2
  exit 1
fi
kib=$(du -sk "$DEST" | cut -f1)
echo "wheelhouse $DEST (cp${PYVER/./}): $(ls "$DEST"/*.whl | wc -l) wheels, $((kib / 1024)) MiB (limit ${LIMIT_MIB} MiB)"
[ "$kib" -le $((LIMIT_MIB * 1024)) ] || { echo "make_wheelhouse.sh: $DEST is over ${LIMIT_MIB} MiB" >&2; exit 1; }
