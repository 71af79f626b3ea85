#!/usr/bin/env bash
# Copy the tool's source as it is in the working tree (tracked and new files that git does not
# ignore) into DIR: what build.sh puts into the image. Usage: iso-build/stage-source.sh DIR
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:?usage: stage-source.sh DIR}
mkdir -p "$DIR"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard -- ceremony pyproject.toml \
   README.md scripts/make_manifest.py) | while IFS= read -r -d '' f; do
  if [ -f "$REPO/$f" ]; then install -D -m 644 "$REPO/$f" "$DIR/$f"; fi
done
rm -f "$DIR/ceremony/MANIFEST.json"
