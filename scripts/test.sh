#!/usr/bin/env bash
# Set up, then run every check CI runs, stopping at the first failure.
# Arguments go to pytest, e.g. scripts/test.sh -k transcript -x
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${CEREMONY_VENV:-$REPO/.venv}

bash "$REPO/scripts/setup.sh"
# The tools read their configuration from pyproject.toml in the repo root.
cd "$REPO"

# Echo each command first so a failure in the log says which step it was.
step() {
  echo "+ $*"
  "$@"
}

step "$VENV/bin/ruff" check ceremony tests scripts
step "$VENV/bin/mypy"
step "$VENV/bin/lint-imports"
# One worker per core (pytest-xdist); pass -n 0 to run in one process, e.g. under a debugger.
step "$VENV/bin/python" -m pytest -q -n "${CEREMONY_TEST_WORKERS:-auto}" "$@"
