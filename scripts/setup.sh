#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: system packages, then a
# virtualenv with ceremony installed in editable mode plus its dev tools.
# Safe to run again; later runs skip apt entirely when nothing is missing.
set -euo pipefail

# Work from the script's own location so it can be called from anywhere.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${CEREMONY_VENV:-$REPO/.venv}

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

# softhsm2/opensc/pcscd/vsmartcard-vpcd back the HSM and smartcard rehearsals;
# libpcsclite-dev, swig, gcc and python3-dev are needed to build pyscard;
# zbar reads back the QR codes we print; openssl parses the root certificates in the tests;
# poppler-utils: pdftoppm renders the printed transcript's pages for its QR read-back
# (`ceremony print`), and pdftotext/pdftoppm read back the PDFs in the tests;
# libmagickcore-6.q16-6-extra holds ImageMagick's SVG coder, which zbarimg needs to read back
# SVG QR parts (libzbar0 only recommends it, and recommends are not installed here).
APT_PACKAGES=(
  python3 python3-venv python3-dev gcc make
  softhsm2 opensc pcscd vsmartcard-vpcd libpcsclite-dev swig
  zbar-tools libzbar0 pkg-config openssl poppler-utils libmagickcore-6.q16-6-extra
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  # Only "install ok installed" counts; removed-but-configured packages report
  # "deinstall ok config-files", and unknown ones make dpkg-query fail.
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null 2>&1; then
    echo "setup: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing apt packages: ${missing[*]}"
  # Update only when we actually install, so repeat runs stay offline and fast.
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Use whatever python3 is on PATH (system or pyenv); the venv pins it from here on.
if [ ! -x "$VENV/bin/python" ]; then
  created_venv=
  [ -e "$VENV" ] || created_venv=1
  if ! python3 -m venv "$VENV"; then
    # Don't leave a half-made venv behind: the next run would mistake it for a good one.
    [ -z "$created_venv" ] || rm -rf -- "$VENV"
    echo "setup: '$(command -v python3) -m venv' does not work here; install python3-venv (or use a python3 that has venv and ensurepip) and rerun." >&2
    exit 2
  fi
fi

# A venv whose base interpreter has gone (e.g. a removed pyenv version) cannot be repaired in place.
if ! "$VENV/bin/python" -c '' 2>/dev/null; then
  echo "setup: $VENV/bin/python does not run (its base python may be gone); delete $VENV and rerun." >&2
  exit 1
fi

# The install is editable, so code edits need no reinstall; only a change to
# pyproject.toml (deps, entry points) does. Skipping pip otherwise keeps repeat
# runs (every test.sh/rehearse.sh) fast, quiet and able to work offline.
stamp="$VENV/.ceremony-setup-stamp"
want="$REPO $(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  # -q keeps a normal run quiet; pip still prints errors to stderr.
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$REPO[dev]"
  # Written only after a successful install, so a failed run is retried next time.
  echo "$want" > "$stamp"
fi

echo "setup: ready; virtualenv at $VENV"
