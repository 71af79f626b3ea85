#!/usr/bin/env bash
# Build the image twice, in two separate directories, and compare: the same inputs must give
# the same bytes. Prints both digests and build times; exit 0 when they are equal, 1 if not
# (then it names which of the image's parts differ).
#
#   sudo iso-build/build-twice.sh [BASE]        (default BASE: out/twice)
#
# Both builds use the same release key (an unofficial one from the cache, or $RELEASE_KEY)
# and the same downloaded inputs. Long: twice the time of build.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
BASE=${1:-$REPO/out/twice}
mkdir -p "$BASE"
# One copy of the source for both builds, so that an edit between them cannot differ them.
rm -rf "$BASE/src"
bash "$HERE/stage-source.sh" "$BASE/src"
times=()
for run in a b; do
  start=$(date +%s)
  SOURCE_DIR=$BASE/src bash "$HERE/build.sh" --out "$BASE/$run" > "$BASE/$run.log" 2>&1 || {
    echo "build-twice: build $run failed; see $BASE/$run.log" >&2
    tail -n 20 "$BASE/$run.log" >&2
    exit 2
  }
  times+=("$(( $(date +%s) - start ))")
done
. "$HERE/config.env"
echo "build a: ${times[0]} s   build b: ${times[1]} s"
for run in a b; do
  echo "build $run:"
  sed 's/^/  /' "$BASE/$run/SHA256SUMS"
done
if cmp -s "$BASE/a/SHA256SUMS" "$BASE/b/SHA256SUMS" \
   && cmp -s "$BASE/a/$IMAGE_NAME.iso" "$BASE/b/$IMAGE_NAME.iso"; then
  echo "build-twice: the two images are identical"
  sed -n '2,4p' "$BASE/a/$IMAGE_NAME.digest.txt"
  exit 0
fi
echo "build-twice: the images differ" >&2
diff "$BASE/a/SHA256SUMS" "$BASE/b/SHA256SUMS" >&2 || true
# Which files of the root file systems differ (both are kept under work/).
diff -rq --no-dereference "$BASE/a/work/rootfs" "$BASE/b/work/rootfs" 2>&1 | head -n 40 >&2 || true
exit 1
