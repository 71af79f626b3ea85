#!/usr/bin/env bash
# Run a full rehearsal ceremony (SoftHSM, virtual cards) after making sure the
# environment is set up. Arguments go straight to `ceremony rehearse`, e.g. --out DIR.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${CEREMONY_VENV:-$REPO/.venv}

bash "$REPO/scripts/setup.sh"
# No cd: relative paths such as --out DIR stay relative to the caller's directory.
exec "$VENV/bin/ceremony" rehearse "$@"
