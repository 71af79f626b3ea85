#!/usr/bin/env bash
# Build the ceremony live image, reproducibly (docs/adr/0013-live-image-with-mmdebstrap.md).
#
#   sudo iso-build/build.sh [--out DIR] [--release-key KEY.pem]
#
# Inputs, all in this directory: config.env (suite, snapshot date, SOURCE_DATE_EPOCH),
# packages.txt and build-packages.txt (pinned Debian packages), python.lock (Python
# distributions by SHA-256), rootfs/ and hooks/customize.sh; and the tool's source as it is
# in the working tree. Outputs in DIR (default out/iso): IMAGE.iso, vmlinuz and initrd.img
# (the same bytes as in the image, for boot-test.sh), SHA256SUMS, IMAGE.digest.txt (the
# image digest as hex and as words to read aloud), packages.installed.txt, build.log.
#
# The release key signs the tool's manifest (docs/release.md). Without --release-key (or
# $RELEASE_KEY) the build makes an unofficial key once, in the cache, pins it in the image's
# copy of the tool and says "official": false in /etc/ceremony-image.
#
# SOURCE_DIR=DIR takes the tool's source from DIR (made by stage-source.sh) instead of the
# working tree: build-twice.sh gives both builds one copy.
#
# Needs root (mmdebstrap in root mode, chroot, bind mounts), mmdebstrap, the Debian mirror
# ($MIRROR, default snapshot.debian.org at config.env's SNAPSHOT) and, the first time, PyPI
# (fetch.sh). Takes 4 to 10 minutes on 2 cores; docs/workstation-guide.md has figures.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
OUT=$REPO/out/iso
RELEASE_KEY=${RELEASE_KEY:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --release-key) RELEASE_KEY=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "build: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# shellcheck source=config.env
. "$HERE/config.env"
export SOURCE_DATE_EPOCH
export LC_ALL=C.UTF-8 TZ=UTC PYTHONHASHSEED=0
umask 022

[ "$(id -u)" -eq 0 ] || { echo "build: run as root (mmdebstrap, chroot, mounts)" >&2; exit 2; }
command -v mmdebstrap > /dev/null || {
  echo "build: mmdebstrap is missing (apt-get install mmdebstrap)" >&2; exit 2; }

MIRROR=${MIRROR:-http://snapshot.debian.org/archive/debian/$SNAPSHOT}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://snapshot.debian.org/archive/debian-security/$SNAPSHOT}
CACHE=${CACHE:-$REPO/out/iso-cache}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
WORK=$OUT/work
B=$WORK/builder
mkdir -p "$CACHE"
exec > >(tee "$OUT/build.log") 2>&1
SECONDS=0
log() { printf 'build [%5ds] %s\n' "$SECONDS" "$*"; }

cleanup() {
  for m in "$B/mnt/rootfs" "$B/dev" "$B/proc" "$B/sys"; do
    mountpoint -q "$m" 2> /dev/null && umount -l "$m"
  done
  rm -f "$B/build/key.pem"
}
trap cleanup EXIT
if [ -d "$WORK" ]; then cleanup; rm -rf --one-file-system "$WORK"; fi
mkdir -p "$WORK"

pins() { grep -v '^\s*#' "$1" | awk 'NF{print $1}'; }
MIRRORS=(
  "deb [check-valid-until=no] $MIRROR $SUITE main"
  "deb [check-valid-until=no] $MIRROR $SUITE-updates main"
  "deb [check-valid-until=no] $SECURITY_MIRROR $SUITE-security main"
)
debootstrap_to() {  # $1 target, $2 package list, then extra mmdebstrap options
  local target=$1 list=$2
  shift 2
  mmdebstrap --mode=root --variant=minbase --architectures="$ARCH" --format=directory \
    --aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Check-Valid-Until "false"' \
    --include="$(pins "$list" | paste -sd, -)" "$@" "$SUITE" "$target" "${MIRRORS[@]}"
}
check_pins() {  # every package of $2 is installed in $1 at exactly its pinned version
  local want name got
  while read -r want; do
    name=${want%%=*}
    got=$(chroot "$1" dpkg-query -W -f '${Version}' "$name" 2> /dev/null || true)
    if [ "$got" != "${want#*=}" ]; then
      echo "build: $name is ${got:-not installed} in $(basename "$1"), not the pinned" \
           "${want#*=}: the mirror is not the snapshot the pins were taken from" >&2
      return 1
    fi
  done < <(pins "$2")
}
in_builder() {
  chroot "$B" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 TZ=UTC \
    SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" PYTHONHASHSEED=0 HOME=/build "$@"
}

log "Python distributions (python.lock)"
bash "$HERE/fetch.sh" "$CACHE/python"

log "builder chroot ($SUITE, snapshot $SNAPSHOT)"
debootstrap_to "$B" "$HERE/build-packages.txt"
check_pins "$B" "$HERE/build-packages.txt"
mount -t proc proc "$B/proc"
mount -t sysfs sysfs "$B/sys"
mount --bind /dev "$B/dev"
mkdir -p "$B/build/src" "$B/build/python" "$B/build/wheels" "$B/build/out" "$B/build/iso/live" \
         "$B/build/iso/isolinux" "$B/mnt/rootfs"
cp "$CACHE"/python/* "$B/build/python/"

if [ -n "${SOURCE_DIR:-}" ]; then
  log "the tool's source from $SOURCE_DIR"
  cp -r "$SOURCE_DIR"/. "$B/build/src/"
else
  log "the tool's source as it is in the working tree"
  bash "$HERE/stage-source.sh" "$B/build/src"
fi
rm -f "$B/build/src/ceremony/MANIFEST.json"

OFFICIAL=true
PIN=()
if [ -z "$RELEASE_KEY" ]; then
  OFFICIAL=false
  PIN=(--pin)
  RELEASE_KEY=$CACHE/unofficial-release-key.pem
fi
in_builder python3 -m venv /build/venv
in_builder sh -c 'ls /build/python/*.whl | LC_ALL=C sort | xargs /build/venv/bin/pip install \
  --no-index --no-deps --no-cache-dir --disable-pip-version-check --quiet'
if [ ! -f "$RELEASE_KEY" ] && [ "$OFFICIAL" = false ]; then
  in_builder sh -c 'cd /build/src && /build/venv/bin/python scripts/make_manifest.py \
    --new-key /build/key.pem' > /dev/null
  cp "$B/build/key.pem" "$RELEASE_KEY"
  chmod 600 "$RELEASE_KEY"
  rm -f "$B/build/key.pem"
fi
install -m 600 "$RELEASE_KEY" "$B/build/key.pem"
log "signed manifest of the tool (official release key: $OFFICIAL)"
in_builder sh -c "cd /build/src && /build/venv/bin/python scripts/make_manifest.py \
  --key /build/key.pem --python 3.11 ${PIN[*]}"
rm -f "$B/build/key.pem"
KEYID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["signatures"][0]["keyid"])' \
        "$B/build/src/ceremony/MANIFEST.json")
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$B/build/src/ceremony/__init__.py")

log "wheels of pyscard (compiled here) and of the tool"
PYSCARD=$(cd "$B/build/python" && ls pyscard-*.tar.gz)
in_builder sh -c "cd /build && tar -xzf python/$PYSCARD && cd ${PYSCARD%.tar.gz} && \
  /build/venv/bin/pip wheel --no-index --no-deps --no-build-isolation --quiet -w /build/wheels ."
in_builder sh -c 'cd /build/src && /build/venv/bin/pip wheel --no-index --no-deps \
  --no-build-isolation --quiet -w /build/wheels .'
mkdir -p "$WORK/wheels"
cp "$B"/build/wheels/*.whl "$WORK/wheels/"
for f in "$B"/build/python/*.whl; do
  case "$(basename "$f")" in setuptools-*) ;; *) cp "$f" "$WORK/wheels/" ;; esac
done

log "image root file system"
export ISO_BUILD=$HERE WHEELS=$WORK/wheels
IMAGE_INFO=$(printf '{"name": "%s", "version": "%s", "suite": "%s", "snapshot": "%s", "source_date_epoch": %s, "release_key": "%s", "official": %s}' \
  "$IMAGE_NAME" "$VERSION" "$SUITE" "$SNAPSHOT" "$SOURCE_DATE_EPOCH" "$KEYID" "$OFFICIAL")
export IMAGE_INFO
debootstrap_to "$WORK/rootfs" "$HERE/packages.txt" \
  --customize-hook="\"$HERE/hooks/customize.sh\" \"\$1\""
check_pins "$WORK/rootfs" "$HERE/packages.txt"
# apt's binary caches survive mmdebstrap's cleanup and differ from build to build; apt
# rebuilds them when it needs them (it never runs on the workstation).
rm -f "$WORK"/rootfs/var/cache/apt/*.bin
chroot "$WORK/rootfs" dpkg-query -W -f '${Package}=${Version}\n' | LC_ALL=C sort \
  > "$OUT/packages.installed.txt"

log "squashfs and ISO (tools from the builder chroot)"
KVER=$(ls "$WORK/rootfs/lib/modules" | LC_ALL=C sort | tail -n 1)
cp "$WORK/rootfs/boot/vmlinuz-$KVER" "$B/build/iso/live/vmlinuz"
cp "$WORK/rootfs/boot/initrd.img-$KVER" "$B/build/iso/live/initrd.img"
mount --bind -o ro "$WORK/rootfs" "$B/mnt/rootfs"
in_builder env -u SOURCE_DATE_EPOCH mksquashfs /mnt/rootfs /build/iso/live/filesystem.squashfs -noappend -no-progress \
  -quiet -comp xz -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH" -e boot
umount "$B/mnt/rootfs"
cp "$B/usr/lib/ISOLINUX/isolinux.bin" "$B/usr/lib/syslinux/modules/bios/ldlinux.c32" \
   "$B/build/iso/isolinux/"
cat > "$B/build/iso/isolinux/isolinux.cfg" << CFG
SERIAL 0 115200
DEFAULT ceremony
PROMPT 0
TIMEOUT 0
LABEL ceremony
  KERNEL /live/vmlinuz
  APPEND initrd=/live/initrd.img boot=live components noeject quiet console=ttyS0,115200n8 console=tty0
CFG
(cd "$B/build/iso" && find live isolinux -type f ! -name SHA256SUMS | LC_ALL=C sort \
   | xargs sha256sum) > "$B/build/iso/SHA256SUMS"
find "$B/build/iso" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
in_builder xorriso -as mkisofs -o "/build/out/$IMAGE_NAME.iso" -V "$VOLUME_ID" -iso-level 3 \
  -r -J -joliet-long -isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin -c isolinux/boot.cat \
  -b isolinux/isolinux.bin -no-emul-boot -boot-load-size 4 -boot-info-table /build/iso \
  2> "$WORK/xorriso.log" || { cat "$WORK/xorriso.log" >&2; exit 1; }

ISO=$OUT/$IMAGE_NAME.iso
cp "$B/build/out/$IMAGE_NAME.iso" "$ISO"
cp "$B/build/iso/live/vmlinuz" "$B/build/iso/live/initrd.img" "$OUT/"
# `ceremony attest` hashes as many bytes of the medium as the ISO 9660 header names: they
# must be the whole file, or the digest on the day would not be the published one.
blocks=$(od -An -t u4 -j $((16 * 2048 + 80)) -N 4 "$ISO" | tr -d ' ')
if [ $((blocks * 2048)) -ne "$(stat -c %s "$ISO")" ]; then
  echo "build: the ISO 9660 volume ($((blocks * 2048)) bytes) is not the whole image" \
       "($(stat -c %s "$ISO") bytes)" >&2
  exit 1
fi
(cd "$OUT" && sha256sum "$IMAGE_NAME.iso" vmlinuz initrd.img) > "$OUT/SHA256SUMS"
(cd "$B/build/iso" && sha256sum live/filesystem.squashfs) >> "$OUT/SHA256SUMS"
(cd "$B/build/src" && sha256sum ceremony/MANIFEST.json) >> "$OUT/SHA256SUMS"
DIGEST=$(sha256sum "$ISO" | cut -d' ' -f1)
WORDS=$(chroot "$WORK/rootfs" /opt/ceremony/venv/bin/python -B -c \
  "from ceremony.display import grouped_hex, words; import sys; print(grouped_hex(sys.argv[1])); print(words(sys.argv[1]))" \
  "$DIGEST")
{
  echo "image:   $IMAGE_NAME.iso ($(stat -c %s "$ISO") bytes)"
  echo "SHA-256: $DIGEST"
  echo "grouped: $(echo "$WORDS" | sed -n 1p)"
  echo "words:   $(echo "$WORDS" | sed -n 2p)"
  echo "built from snapshot $SNAPSHOT, SOURCE_DATE_EPOCH $SOURCE_DATE_EPOCH, ceremony $VERSION," \
       "release key $KEYID (official: $OFFICIAL)"
} > "$OUT/$IMAGE_NAME.digest.txt"
cat "$OUT/$IMAGE_NAME.digest.txt"
log "done: $ISO"
