#!/usr/bin/env bash
# Download the Python distributions of python.lock into DIR (once) and check every digest
# (always). The only step of the build that needs PyPI; the build itself runs offline from
# DIR. Usage: iso-build/fetch.sh DIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${1:?usage: fetch.sh DIR}
mkdir -p "$DIR"
grep -v '^\s*#' "$HERE/python.lock" | while read -r sha file url; do
  [ -n "$sha" ] || continue
  if [ ! -f "$DIR/$file" ]; then
    echo "fetch: $file"
    curl -fsSL --retry 3 -o "$DIR/$file.part" "$url"
    mv "$DIR/$file.part" "$DIR/$file"
  fi
  echo "$sha  $DIR/$file" | sha256sum --check --quiet - || {
    echo "fetch: $DIR/$file does not have the SHA-256 python.lock pins; delete it and rerun" >&2
    exit 1
  }
done
