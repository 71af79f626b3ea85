#!/usr/bin/env bash
# Boot the built image in QEMU with no network device, let it run `ceremony selftest`,
# `ceremony attest`, `ceremony rehearse` and `ceremony verify` on its serial console
# (ceremony-autotest.service, started by ceremony.autotest on the kernel command line),
# and report. Exit 0 when every step passed, 1 when one failed, 2 when it did not finish.
#
#   iso-build/boot-test.sh [OUT]          (default OUT: out/iso, as written by build.sh)
#
# Software emulation by default (ACCEL=tcg; ACCEL=kvm where /dev/kvm exists is faster).
# The ISO is the CD; its own kernel and initrd (OUT/vmlinuz, OUT/initrd.img, checked
# against SHA256SUMS) are given to QEMU so that ceremony.autotest can be added to the
# kernel command line the ISO's boot loader uses. TIMEOUT (seconds, default 3600) bounds it.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
OUT=${1:-$REPO/out/iso}
. "$HERE/config.env"
ACCEL=${ACCEL:-tcg}
TIMEOUT=${TIMEOUT:-3600}
QEMU=${QEMU:-qemu-system-x86_64}
command -v "$QEMU" > /dev/null || {
  echo "boot-test: $QEMU is missing (apt-get install qemu-system-x86)" >&2; exit 2; }
(cd "$OUT" && sha256sum --check --quiet --ignore-missing SHA256SUMS) || {
  echo "boot-test: $OUT does not match its SHA256SUMS" >&2; exit 2; }
LOG=$OUT/boot-test.serial.log
start=$(date +%s)
set +e
timeout "$TIMEOUT" "$QEMU" -machine pc -accel "$ACCEL" -m 2048 -smp 2 -nodefaults -nic none \
  -display none -no-reboot -serial "file:$LOG" \
  -drive "file=$OUT/$IMAGE_NAME.iso,media=cdrom,readonly=on,if=ide" \
  -kernel "$OUT/vmlinuz" -initrd "$OUT/initrd.img" \
  -append "boot=live components noeject console=ttyS0,115200n8 ceremony.autotest \
    systemd.mask=serial-getty@ttyS0.service"
qemu_rc=$?
set -e
elapsed=$(( $(date +%s) - start ))
grep -a 'CEREMONY-AUTOTEST' "$LOG" || true
echo "boot-test: QEMU ($ACCEL) exited with $qemu_rc after $elapsed s; serial log $LOG"
if ! grep -aq 'CEREMONY-AUTOTEST done' "$LOG"; then
  echo "boot-test: the image did not finish its self-test" >&2
  tail -n 30 "$LOG" >&2
  exit 2
fi
failed=0
for step in selftest attest rehearse verify; do
  grep -aq "CEREMONY-AUTOTEST $step rc=0" "$LOG" || { echo "boot-test: $step failed" >&2; failed=1; }
done
[ "$failed" -eq 0 ] && echo "boot-test: selftest, attest, rehearse and verify passed"
exit "$failed"
