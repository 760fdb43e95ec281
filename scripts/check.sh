#!/usr/bin/env bash
# Lint, format check, type check, then every test (arguments go to pytest). Needs `scripts/setup.sh --test`.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check dstune tests scripts
.venv/bin/ruff format --check dstune tests scripts
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
